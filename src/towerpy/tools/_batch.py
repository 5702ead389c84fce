"""What a batch of `ParallelToolRouter` tells the tools it runs, through two context variables.

- `current_batch`: the batch itself, set once per batch (the worker tasks inherit it). A tool
  reads it to report a worker thread it could not stop (`Batch.abandon`), and the `ToolRouter`
  to check that a sequential tool runs as a barrier.
- `current_clock`: the `Clock` of the invocation being run, set only when the batch has a
  ``tool_timeout`` or a ``wait_timeout``. The `ToolRouter` pauses it while the tool it calls
  waits for its own capacity (its concurrency permit, a worker thread), and the tool resumes it
  when its function starts: ``tool_timeout`` bounds the tool's run, never its wait.

A tool called by another tool's function, or by anything but a batch, finds what its caller
set or nothing, and then behaves exactly as without a batch.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from typing import TYPE_CHECKING, final

from .._backend import current_time

if TYPE_CHECKING:
    from collections.abc import Callable

    import anyio

__all__ = ["Batch", "Clock", "current_batch", "current_clock"]


@final
class Clock:
    """The time budgets of one invocation: its run (``tool_timeout``) and its waits.

    The invocation starts waiting (for the router's ``ready()``); `run` starts the run budget,
    `pause` and `resume` move between the two. The cancel scope around the invocation always
    has the deadline of the budget being spent, so whichever runs out first cancels it, and
    `waiting` then tells which one it was.
    """

    __slots__ = ("_since", "inside", "run_left", "scope", "wait_left", "waiting")

    def __init__(self, run: float | None, wait: float | None, scope: anyio.CancelScope) -> None:
        self.run_left = math.inf if run is None else run
        self.wait_left = math.inf if wait is None else wait
        self.scope = scope
        self.waiting = True
        self.inside = False  # a tool's function runs: tools it calls leave the clock alone
        self._since = current_time()
        scope.deadline = self._since + self.wait_left

    def run(self) -> None:
        """The invocation's own work starts (or goes on): spend the run budget."""
        if not self.waiting or self.scope.cancel_called:  # expired: keep which budget it was
            return
        now = current_time()
        self.wait_left -= now - self._since
        self._since = now
        self.waiting = False
        self.scope.deadline = now + self.run_left

    def pause(self) -> None:
        """The invocation waits for capacity: spend the wait budget instead."""
        if self.waiting or self.scope.cancel_called:
            return
        now = current_time()
        self.run_left -= now - self._since
        self._since = now
        self.waiting = True
        self.scope.deadline = now + self.wait_left


@final
class Batch:
    """One batch as its tools see it: which tools it runs alone, and the threads it left behind.

    Attributes:
        size: How many invocations the batch has.
        sequential: Tells which tool names the batch runs as barriers, or None when it cannot
            tell (no catalog): a sequential tool then refuses to run inside a batch of several.
        abandoned: ``(tool name, thread is done)`` for each worker thread a cancelled sync tool
            left running; the batch reports those still running when it raises under
            `JoinPolicy.FAIL_FAST`.
    """

    __slots__ = ("abandoned", "sequential", "size")

    def __init__(self, size: int, sequential: Callable[[str], bool] | None) -> None:
        self.size = size
        self.sequential = sequential
        self.abandoned: list[tuple[str, Callable[[], bool]]] = []

    def abandon(self, name: str, done: Callable[[], bool]) -> None:
        """Records a worker thread of the tool ``name`` left running by a cancelled call."""
        self.abandoned.append((name, done))

    def running_threads(self) -> list[str]:
        """The tool names of abandoned threads still running."""
        return [name for name, done in self.abandoned if not done()]


current_batch: ContextVar[Batch | None] = ContextVar("towerpy_tool_batch", default=None)
current_clock: ContextVar[Clock | None] = ContextVar("towerpy_tool_clock", default=None)
