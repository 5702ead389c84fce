"""One fan-out of jobs under a join policy: the engine of `ParallelToolRouter` and the workflows.

A `Join` runs ``call(items[i])`` for the indices it is given, at most ``limit`` at once, in the
calling task and the helper tasks `fan_out` starts, keeps the outputs by index, and applies the
`JoinPolicy` to every failure (a tool batch, `towerpy.workflow.Parallel` and
`towerpy.workflow.MapReduce` all fail the same way). It takes the next index in one of two ways:

- `Join.run`: in order, from a counter over ``start..stop``: one int for the whole batch, which
  is the hot path of a batch of tool calls (given an ``order``, the counter walks that list of
  indices instead: a batch by priority);
- `Join.run_graph`: from a queue of ready indices, fed by a `Dependencies` table: an index
  becomes ready the moment the last index it depends on has finished, and is taken at once if a
  worker is free, so every job starts as early as the limit allows, never in waves. Given
  priorities, the ready index of the highest priority (then the lowest index) is taken first.

Under `JoinPolicy.ISOLATE` and `JoinPolicy.JOIN_ALL` the dependents of a failed job never run:
each is given the error ``skip`` makes (naming the failed job) as its error output (ISOLATE) or
its outcome (JOIN_ALL), at the instant that job fails. Under `JoinPolicy.FAIL_FAST` the first
failure stops everything: nothing waiting starts.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from .. import _backend
from ._failures import stray_cancellation

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .._backend._fanout import FanOut

__all__ = ["Dependencies", "Join", "JoinPolicy", "by_priority"]

ItemT = TypeVar("ItemT")


class JoinPolicy(enum.Enum):
    """What a batch does when one of its invocations fails."""

    JOIN_ALL = "join_all"
    """Wait for every invocation, then raise the failure of the earliest failed one."""
    FAIL_FAST = "fail_fast"
    """On the first failure, cancel the rest and raise it."""
    ISOLATE = "isolate"
    """Never raise: a failed invocation's output has ``is_error=True`` and a message."""


@final
class Dependencies:
    """Who waits for whom, by index: the table `Join.run_graph` schedules from.

    Attributes:
        dependents: For each index, the indices that depend on it.
        counts: For each index, how many distinct indices it depends on.
    """

    __slots__ = ("counts", "dependents")

    def __init__(self, dependents: list[list[int]], counts: list[int]) -> None:
        self.dependents = dependents
        self.counts = counts


def by_priority(levels: Sequence[float], start: int, stop: int) -> list[int]:
    """Returns the indices ``start..stop``, the highest level first, then in index order."""
    return sorted(range(start, stop), key=lambda index: (-levels[index], index))


@final
class _ReadyByPriority:
    """The ready indices of a graph, the highest priority first: the face of its deque."""

    __slots__ = ("_heap", "_levels")

    def __init__(self, levels: Sequence[float], ready: list[int]) -> None:
        self._levels = levels
        self._heap = [(-levels[index], index) for index in ready]
        heapq.heapify(self._heap)

    def append(self, index: int) -> None:
        heapq.heappush(self._heap, (-self._levels[index], index))

    def popleft(self) -> int:
        return heapq.heappop(self._heap)[1]

    def __len__(self) -> int:
        return len(self._heap)


@final
class Join(Generic[ItemT]):
    """One run of jobs: their outputs, the next one to take, and the failure that ends it.

    Args:
        items: What each job is called with, by index.
        call: Runs one job.
        limit: The most jobs in flight at once.
        policy: What a failure does.
        isolate: Makes the output a failed job leaves under `JoinPolicy.ISOLATE`.
        label: Names a job in an error message (``"tool 'search'"``, ``"step 2 (...)"``).
        finish: Called with each index whose output is final (a result, or an ISOLATE error
            output), or None. An exception it raises ends the run, as `abort` does.
    """

    __slots__ = (
        "_deps",
        "_finish",
        "_isolate",
        "_label",
        "_order",
        "_prepare",
        "_ready",
        "_skip",
        "_skipped",
        "call",
        "end",
        "error",
        "error_index",
        "errors",
        "fanout",
        "items",
        "limit",
        "next",
        "outputs",
        "policy",
        "stopped",
    )

    def __init__(
        self,
        items: Sequence[ItemT],
        call: Callable[[ItemT], Awaitable[Any]],
        limit: int,
        policy: JoinPolicy,
        isolate: Callable[[int, Exception], Any],
        label: Callable[[int], str],
        finish: Callable[[int], None] | None = None,
    ) -> None:
        self.items = items
        self.call = call
        self.limit = limit
        self.policy = policy
        self._isolate = isolate
        self._label = label
        self._finish = finish
        self.outputs: list[Any] = [None] * len(items)
        self.error: BaseException | None = None
        self.error_index = -1
        self.errors: dict[int, Exception] = {}  # JOIN_ALL: every failure, by index
        self.next = 0
        self.end = 0
        self.stopped = False  # FAIL_FAST failed, or aborted: take nothing more
        self.fanout: FanOut | None = None
        self._order: Sequence[int] | None = None  # run(): the indices by position, if not in order
        # the graph's state is set by run_graph alone: a plain batch does not pay for it
        self._ready: deque[int] | _ReadyByPriority
        self._deps: Dependencies
        self._skipped: set[int]  # the jobs that will not run: a dependency failed
        self._prepare: Callable[[int, ItemT], ItemT] | None
        self._skip: Callable[[int, int, Exception], Exception]

    def abort(self, error: BaseException) -> None:
        """Ends the run with ``error`` whatever the policy: cancels every job, starts none."""
        if self.error is None or self.error_index >= 0:
            self.error, self.error_index = error, -1
        self.stopped = True
        if self.fanout is not None:
            self.fanout.cancel()

    # --- in order ------------------------------------------------------------------------------

    def _pending(self) -> int:
        return self.end - self.next

    async def run(self, start: int, stop: int, order: Sequence[int] | None = None) -> None:
        """Runs the jobs ``start..stop`` in index order, at most ``limit`` at once.

        Args:
            start: The first position to run.
            stop: The position after the last.
            order: The index of the job at each position (a permutation of every index, or of
                ``start..stop`` at those positions), or None: the job at position ``i`` is ``i``.
        """
        count = stop - start
        if count <= 0:
            return
        self.next, self.end = start, stop
        self._order = order
        if count == 1 or self.limit == 1:  # one worker: the calling task alone
            self.fanout = None
            await self._work(None)
            return
        fanout = _backend.current().fan_out(self.limit, self._pending, self._work)
        self.fanout = fanout
        try:
            await fanout.run()
        finally:
            self.fanout = None

    async def _work(self, fanout: FanOut | None) -> None:
        # each worker takes the next index until none is left
        call = self.call
        items = self.items
        outputs = self.outputs
        finish = self._finish
        order = self._order
        while self.next < self.end and not self.stopped:
            position = self.next
            self.next = position + 1
            if fanout is not None and position + 1 < self.end:
                fanout.demand()
            index = position if order is None else order[position]
            try:
                outputs[index] = await call(items[index])
            except Exception as exc:
                if self._failed(index, exc):
                    return
                if self.policy is not JoinPolicy.ISOLATE:
                    continue
            except BaseException as exc:
                if not stray_cancellation(exc):
                    raise
                if self._failed(index, self._stray(index, exc)):
                    return
                if self.policy is not JoinPolicy.ISOLATE:
                    continue
            if finish is not None:
                self._finished(finish, index)

    # --- by dependencies -----------------------------------------------------------------------

    def _ready_count(self) -> int:
        return len(self._ready)

    async def run_graph(
        self,
        deps: Dependencies,
        skip: Callable[[int, int, Exception], Exception],
        prepare: Callable[[int, ItemT], ItemT] | None = None,
        levels: Sequence[float] | None = None,
    ) -> None:
        """Runs every job, each once the jobs it depends on have finished.

        ``finish`` is not called in this mode.

        Args:
            deps: Who depends on whom; its ``counts`` are used up by the run.
            skip: Makes the error of a job that will not run, from its index, the index of
                the failed job it depends on, and that job's error.
            prepare: Makes the item a job is called with, just before it starts (the outputs
                of its dependencies are in `outputs` then), or None to use ``items`` as given.
            levels: Each job's priority, or None: of the jobs ready at once, the one of the
                highest priority starts first (then the lowest index), instead of the first
                to become ready.
        """
        self._deps = deps
        self._skip = skip
        self._prepare = prepare
        self._skipped = set()
        counts = deps.counts
        ready = [index for index, count in enumerate(counts) if count == 0]
        self._ready = deque(ready) if levels is None else _ReadyByPriority(levels, ready)
        if self.limit == 1 or len(self.items) <= 1:
            self.fanout = None
            await self._work_graph(None)
            return
        fanout = _backend.current().fan_out(self.limit, self._ready_count, self._work_graph)
        self.fanout = fanout
        try:
            await fanout.run()
        finally:
            self.fanout = None

    async def _work_graph(self, fanout: FanOut | None) -> None:
        call = self.call
        items = self.items
        outputs = self.outputs
        ready = self._ready
        prepare = self._prepare
        while ready and not self.stopped:
            index = ready.popleft()
            if fanout is not None and ready:
                fanout.demand()
            try:
                item = items[index] if prepare is None else prepare(index, items[index])
                outputs[index] = await call(item)
            except Exception as exc:
                if self._failed(index, exc):
                    return
                self._skip_dependents(index, exc)
                continue
            except BaseException as exc:
                if not stray_cancellation(exc):
                    raise
                error = self._stray(index, exc)
                if self._failed(index, error):
                    return
                self._skip_dependents(index, error)
                continue
            self._release(index)

    def _release(self, index: int) -> None:
        # dependents whose last dependency this was are ready now, in the order they were listed
        deps = self._deps
        counts = deps.counts
        for dependent in deps.dependents[index]:
            left = counts[dependent] - 1
            counts[dependent] = left
            if left == 0 and dependent not in self._skipped:
                self._ready.append(dependent)

    def _skip_dependents(self, failed: int, cause: Exception) -> None:
        """Gives every job that depends on ``failed``, however indirectly, its failure."""
        deps = self._deps
        skip = self._skip
        stack = list(reversed(deps.dependents[failed]))
        while stack:
            dependent = stack.pop()
            if dependent in self._skipped:
                continue
            self._skipped.add(dependent)
            error = skip(dependent, failed, cause)
            if self.policy is JoinPolicy.ISOLATE:
                self.outputs[dependent] = self._isolate(dependent, error)
            else:
                self.errors[dependent] = error
            stack.extend(reversed(deps.dependents[dependent]))

    # --- failures ------------------------------------------------------------------------------

    def _stray(self, index: int, exc: BaseException) -> RuntimeError:
        error = RuntimeError(
            f"{self._label(index)} raised {type(exc).__name__} although nothing cancelled it "
            f"(it awaited something another task cancelled)"
        )
        error.__cause__ = exc
        return error

    def _finished(self, finish: Callable[[int], None], index: int) -> None:
        try:
            finish(index)
        except Exception as exc:
            self.abort(exc)

    def _failed(self, index: int, error: Exception) -> bool:
        """Applies the policy to one failure; returns True when the worker must stop."""
        policy = self.policy
        if policy is JoinPolicy.ISOLATE:
            self.outputs[index] = self._isolate(index, error)
            return False
        if policy is JoinPolicy.JOIN_ALL:
            self.errors[index] = error
            if self.error is None or index < self.error_index:
                self.error, self.error_index = error, index
            return False
        if self.error is None:  # FAIL_FAST: the first failure wins, the rest are cancelled
            self.error, self.error_index = error, index
            self.stopped = True
            if self.fanout is not None:
                self.fanout.cancel()
        return True
