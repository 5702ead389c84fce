"""The event loop towerpy runs on, asyncio or trio, behind one dispatch point: `current`.

Everything that differs between the backends lives in this package: `._asyncio` and `._trio`
implement the same operations (waiters, alarms, a call under a time limit, a cancellable call,
the fan-out of tool calls, watching a task's end...), and `current()` returns the one of the
running backend. Callers ask it (``current().new_waiter()``) instead of testing which backend
runs. The backend is told by sniffio's thread-local record, one attribute read (see
`._running`, which also answers the hot path's questions: the clock, the current task).

Nothing outside this package reads anyio's private internals; where this package does (see
`._anyio`), a missing internal makes it take the public path, with a warning.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from . import _asyncio, _trio
from ._cancel import cancel
from ._running import (
    _sniffio_local,
    current_task,
    current_time,
    in_trio,
    running_clock,
    running_loop,
    time_on,
)
from ._types import Alarm, Cancellable, Deadlines, Waiter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._fanout import FanOut

__all__ = [
    "Alarm",
    "Backend",
    "Cancellable",
    "Deadlines",
    "Waiter",
    "cancel",
    "current",
    "current_task",
    "current_time",
    "in_event_loop",
    "in_trio",
    "new_alarm",
    "new_waiter",
    "running_clock",
    "running_loop",
    "time_on",
]


class Backend(Protocol):
    """The operations each backend module (`._asyncio`, `._trio`) implements."""

    @property
    def NAME(self) -> str: ...

    @property
    def WAKES_IN_ORDER(self) -> bool: ...

    def new_waiter(self) -> Waiter: ...

    def new_alarm(self) -> Alarm: ...

    def threadsafe_scheduler(self) -> Callable[[Callable[[], object]], object]: ...

    def on_task_exit(self, task: Any, callback: Callable[[], object], what: str) -> None: ...

    def call_with_deadline(
        self, deadlines: Deadlines, call: Callable[[Any], Awaitable[Any]], request: Any
    ) -> Awaitable[Any]: ...

    def run_cancellable(
        self,
        call: Callable[[Any], Awaitable[Any]],
        message: Cancellable,
        cancelled: Callable[[], BaseException],
    ) -> Awaitable[Any]: ...

    def fan_out(
        self, limit: int, pending: Callable[[], int], work: Callable[[FanOut], Awaitable[None]]
    ) -> FanOut: ...

    def spawn_system_task(self, run: Callable[..., Awaitable[object]], *args: Any) -> None: ...

    def stray_cancellation(self, error: BaseException) -> bool: ...

    def call_with_timeout(
        self, seconds: float, call: Callable[..., Awaitable[Any]], *args: Any
    ) -> Awaitable[Any]: ...


def current() -> Backend:
    """Returns the running backend's operations: trio's in a trio run, else asyncio's."""
    if _sniffio_local is not None and _sniffio_local.name == "trio":
        return _trio
    return _asyncio


def new_waiter() -> Waiter:
    """Returns a waiter for the current task, on the running backend."""
    return current().new_waiter()


def new_alarm() -> Alarm:
    """Returns an alarm for the current task, on the running backend."""
    return current().new_alarm()


def in_event_loop() -> bool:
    """Whether an event loop (asyncio's or trio's) runs in this thread."""
    if _sniffio_local is not None and _sniffio_local.name == "trio":
        return True
    return asyncio._get_running_loop() is not None
