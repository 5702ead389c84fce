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
cancellation, and an outer scope's cancellation is never mistaken for a timeout. A native
cancellation would break through anyio's shielded scopes, so a deadline that passes while the
call is inside one waits until the shield is gone.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    import asyncio

_task_states: Any
try:  # anyio's record of each asyncio task's innermost cancel scope, to respect its shields
    from anyio._backends._asyncio import _task_states
except ImportError:  # pragma: no cover - a future anyio that moved it: no shield detection
    _task_states = None

__all__ = ["DeadlineQueue", "Entry"]

_FIRST_RECHECK = 0.001  # seconds before looking again at a call that was shielded from its deadline
_LAST_RECHECK = 0.01
_COMPACT_AT = 64


@final
class Entry:
    """One call's deadline: who to cancel, and what was already counted against the task."""

    __slots__ = ("cancelling", "deadline", "done", "fired", "queued", "scope", "task")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()
        state = _task_states.get(task) if _task_states is not None else None
        self.scope: object = None if state is None else state.cancel_scope
        self.done = False
        self.fired = False
        self.queued = True


def _shielded(entry: Entry) -> bool:
    """Tells whether the task sits in a shielded anyio scope entered after the call started."""
    if _task_states is None:  # pragma: no cover - see the import
        return False
    state = _task_states.get(entry.task)
    scope = None if state is None else state.cancel_scope
    while scope is not None and scope is not entry.scope:
        if scope._shield:
            return True
        scope = scope._parent_scope
    return False


@final
class DeadlineQueue:
    """The unfinished calls of one `Timeout` on one event loop, oldest first.

    Deadlines never decrease along the queue (one duration, a monotonic clock), so the oldest
    unfinished entry is always the next to expire.
    """

    __slots__ = ("_done", "_entries", "_handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._entries: deque[Entry] = deque()
        self._done = 0  # finished entries still in the queue
        self._handle: asyncio.TimerHandle | None = None

    def push(self, task: asyncio.Task[Any], deadline: float) -> Entry:
        """Adds a call that must finish by ``deadline``."""
        entry = Entry(task, deadline)
        self._entries.append(entry)
        if self._handle is None:
            self._handle = self.loop.call_at(deadline, self._fire)
        return entry

    def finish(self, entry: Entry) -> None:
        """Marks a call finished (it returned, raised or was cancelled)."""
        entry.done = True
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

    def _fire(self) -> None:
        self._handle = None
        now = self.loop.time()
        entries = self._entries
        while entries:
            entry = entries[0]
            if entry.done:
                entries.popleft()
                self._done -= 1
            elif entry.deadline <= now:
                entries.popleft()
                entry.queued = False
                self._expire(entry, _FIRST_RECHECK)
            else:
                self._handle = self.loop.call_at(entry.deadline, self._fire)
                return

    def _expire(self, entry: Entry, recheck: float) -> None:
        if entry.done:
            return
        if _shielded(entry):
            # checked again shortly: a shield says when it ends to no one
            self.loop.call_later(recheck, self._expire, entry, min(2 * recheck, _LAST_RECHECK))
            return
        entry.fired = True
        entry.task.cancel()
