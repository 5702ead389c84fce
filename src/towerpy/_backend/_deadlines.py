"""Deadlines for the calls of one `Timeout` on asyncio, with a single timer for all of them.

`asyncio.timeout` and anyio's cancel scopes arm a timer per call: several microseconds each,
most of it spent creating, sorting and cancelling timer handles. The calls of one `Timeout`
share a duration, so their deadlines come in the order the calls start: a FIFO queue of them
needs one timer, armed for the oldest unfinished call. Starting a call appends to the queue,
finishing one marks it done; the timer runs once per deadline that actually needs checking.

When a deadline passes, the call's task is cancelled natively (``Task.cancel``) and the
cancellation is counted, as `asyncio.timeout` does, so that `Timeout` can tell its own
cancellation from anyone else's (``Task.uncancel``). anyio's cancel scopes count native
cancellations the same way, so the two interoperate: an anyio scope never swallows this
cancellation, and an outer scope's cancellation is never mistaken for a timeout.

Three rules keep the single timer from changing the outcome, so that it stays what trio's cancel
scopes give (the outermost cancellation that is due wins):

- The timer expires only the calls whose deadline is its own instant: a loop running late does
  not expire later calls ahead of the timers (other scopes' deadlines) due before them, whose
  handles the loop runs first.
- A call does not expire while a cancellation from outside it is under way or due: an anyio
  scope around it that is cancelled, or whose deadline has passed too (its timer may come later
  in the same loop pass), or an outer `Timeout` of the same task whose deadline has passed. The
  outer one then cancels the task, and this call sees cancellation, not its own limit.
- A native cancellation would break through anyio's shielded scopes, so a deadline that passes
  while the call is inside one waits until the shield is gone.

Those two waits are re-checked on a short timer (1 ms, doubling up to 10 ms): neither a shield
nor a scope says to anyone when it ends.

The anyio scopes are read from anyio's private record of them (see `._anyio`); only when it is
there: without it, `Timeout` runs each call in an anyio cancel scope instead.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    import asyncio

from ._anyio import innermost_scope, task_state

__all__ = ["DeadlineQueue", "Entry"]

_FIRST_RECHECK = 0.001  # seconds before looking again at a call that may not expire yet
_LAST_RECHECK = 0.01
_COMPACT_AT = 64

# Each asyncio task's innermost unfinished Timeout call: a call links to the one around it, so
# that the inner one can tell when the outer one is due at the same time (and let it win).
_innermost: dict[asyncio.Task[Any], Entry] = {}

_EXPIRE, _WAIT, _YIELD = 0, 1, 2


@final
class Entry:
    """One call's deadline: who to cancel, and what was already counted against the task."""

    __slots__ = ("cancelling", "deadline", "done", "fired", "outer", "queued", "scope", "task")

    def __init__(self, task: asyncio.Task[Any], deadline: float, outer: Entry | None) -> None:
        self.task = task
        self.deadline = deadline
        self.outer = outer  # the same task's Timeout call around this one
        self.cancelling = task.cancelling()
        state = task_state(task)  # innermost_scope(task), inlined
        self.scope: Any = None if state is None else state.cancel_scope
        self.done = False
        self.fired = False
        self.queued = True


def _shielded(entry: Entry) -> bool:
    """Tells whether the task sits in a shielded anyio scope entered after the call started."""
    scope = innermost_scope(entry.task)
    while scope is not None and scope is not entry.scope:
        if scope._shield:
            return True
        scope = scope._parent_scope
    return False


def _outer_due(outer: Entry | None, scope: object, now: float) -> tuple[bool, Entry | None]:
    """Looks at the outer calls started at the level of ``scope``; returns (any due, the rest)."""
    due = False
    while outer is not None and outer.scope is scope:
        # one that has fired already is counted like ours: expiring too leaves it the winner
        if not outer.done and not outer.fired and outer.deadline <= now:
            due = True
        outer = outer.outer
    return due, outer


def _verdict(entry: Entry, now: float) -> int:
    """Whether the call may expire now, must wait, or yields to a cancellation from outside."""
    due, outer = _outer_due(entry.outer, entry.scope, now)
    scope = entry.scope
    while scope is not None:
        if scope.cancel_called:
            return _YIELD
        if scope.deadline <= now:
            due = True
        if scope.shield:  # nothing further out reaches the call
            return _WAIT if due else _EXPIRE
        scope = scope._parent_scope
        outer_due, outer = _outer_due(outer, scope, now)
        due = due or outer_due
    while outer is not None:  # outer calls not found along the scopes (a scope moved): count them
        outer_due, outer = _outer_due(outer, outer.scope, now)
        due = due or outer_due
    return _WAIT if due else _EXPIRE


@final
class DeadlineQueue:
    """The unfinished calls of one `Timeout` on one event loop, oldest first.

    Deadlines never decrease along the queue (one duration, a monotonic clock), so the oldest
    unfinished entry is always the next to expire. A zero duration queues nothing: each call
    expires at its first suspension, whichever call came before it.
    """

    __slots__ = ("_done", "_entries", "_handle", "_seconds", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self._seconds = seconds
        self._entries: deque[Entry] = deque()
        self._done = 0  # finished entries still in the queue
        self._handle: asyncio.TimerHandle | None = None

    def push(self, task: asyncio.Task[Any]) -> Entry:
        """Adds a call of ``task`` that must finish within the queue's duration from now."""
        entry = Entry(task, self.loop.time() + self._seconds, _innermost.get(task))
        _innermost[task] = entry
        if not self._seconds:
            # due at once: expire it from a callback queued now, ahead of anything that could
            # wake the task once it suspends (a timer might run after that, or before it)
            entry.queued = False
            self.loop.call_soon(self._expire, entry, _FIRST_RECHECK)
            return entry
        self._entries.append(entry)
        if self._handle is None:
            self._handle = self.loop.call_at(entry.deadline, self._fire, entry.deadline)
        return entry

    def finish(self, entry: Entry) -> None:
        """Marks a call finished (it returned, raised or was cancelled)."""
        entry.done = True
        if entry.outer is None:
            _innermost.pop(entry.task, None)
        else:
            _innermost[entry.task] = entry.outer
        entries = self._entries
        if entries and entries[0] is entry:
            entries.popleft()
            while entries and entries[0].done:
                entries.popleft()
                self._done -= 1
        elif entry.queued:  # still queued behind an older call: forget it lazily
            self._done += 1
            if self._done > _COMPACT_AT and 2 * self._done > len(entries):
                # a long call at the head must not make the queue grow with every call after it
                self._entries = deque(e for e in entries if not e.done)
                self._done = 0

    def _fire(self, when: float) -> None:
        self._handle = None
        entries = self._entries
        while entries:
            entry = entries[0]
            if entry.done:
                entries.popleft()
                self._done -= 1
            elif entry.deadline <= when:
                entries.popleft()
                entry.queued = False
                self._expire(entry, _FIRST_RECHECK)
            else:
                # even when this deadline has passed too: the loop runs the timers due before
                # it (an outer scope's, maybe) ahead of this one
                self._handle = self.loop.call_at(entry.deadline, self._fire, entry.deadline)
                return

    def _expire(self, entry: Entry, recheck: float) -> None:
        if entry.done:
            return
        now = max(self.loop.time(), entry.deadline)  # the timer may run a hair early
        verdict = _WAIT if _shielded(entry) else _verdict(entry, now)
        if verdict == _WAIT:
            self.loop.call_later(recheck, self._expire, entry, min(2 * recheck, _LAST_RECHECK))
        elif verdict == _EXPIRE:
            entry.fired = True
            entry.task.cancel()
        # _YIELD: a cancellation from outside is under way; it wins, and ends the call
