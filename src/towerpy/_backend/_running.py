"""Which backend runs, and the hot-path questions about it: the clock, the task, the loop.

`anyio.current_time()` costs about a microsecond because it looks the backend up on every call;
a limiter reads the clock on every request, so this module answers the same question in a few
tens of nanoseconds. The answer is always the one anyio would give: the asyncio loop's
``time()``, or trio's clock (a ``MockClock`` in tests).

The backend is told by the thread-local record sniffio keeps (trio marks its thread there,
and anyio consults it first as well): one attribute read. `towerpy._backend.current` makes that
read to pick the backend's operations; the functions here make it inline, being on every
request's path.
"""

from __future__ import annotations

import asyncio
import sys
import time
from asyncio import _get_running_loop
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

_sniffio_local: Any
try:
    from sniffio import thread_local as _sniffio_local
except ImportError:  # pragma: no cover - trio needs sniffio: without it, asyncio is the only choice
    _sniffio_local = None

if sys.version_info >= (3, 12):
    from asyncio import current_task as _task_running_in
else:  # 3.11's asyncio.current_task() is Python around this C dictionary: skip the wrapper
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    _task_running_in = _current_tasks.get

__all__ = ["current_task", "current_time", "in_trio", "running_clock", "running_loop", "time_on"]


def in_trio() -> bool:
    """Whether trio runs in this thread (else asyncio, or no loop at all)."""
    return _sniffio_local is not None and _sniffio_local.name == "trio"


def _load_trio_clock() -> Any:
    global _trio_clock
    _trio_clock = sys.modules["trio"].lowlevel.current_clock  # trio runs: it is imported
    return _trio_clock()


# Returns the running trio run's clock: trio.lowlevel.current_clock, once trio has run.
_trio_clock: Callable[[], Any] = _load_trio_clock


# The running loop and its clock, cached: on 3.11, asyncio's _get_running_loop() makes a getpid()
# system call each time (100-200 ns in a VM, much of a rate limit's budget). A loop run by
# asyncio's base class records the thread running it, so the last loop seen is this thread's
# running loop when that thread is this one: only one loop runs in a thread at a time.
# One tuple, replaced whole: threads running loops of their own never pair one loop with another's
# clock (a tuple assignment is atomic; two separate globals would not be).
_last: tuple[Any, Callable[[], float]] = (None, time.monotonic)


def running_loop() -> Any:
    """Returns the running asyncio loop of this thread, or None."""
    loop = _last[0]
    if loop is not None and loop._thread_id == _get_ident():
        return loop
    return _remember_running_loop()


def _remember_running_loop() -> Any:
    global _last
    loop = _get_running_loop()
    if loop is not None and isinstance(loop, asyncio.BaseEventLoop):
        # the base class's time() is time.monotonic(): call it without the method in between
        base_clock = type(loop).time is asyncio.BaseEventLoop.time
        _last = (loop, time.monotonic if base_clock else loop.time)
    return loop


def current_time() -> float:
    """Returns what `anyio.current_time()` returns, without its per-call backend lookup."""
    if _sniffio_local is not None and _sniffio_local.name == "trio":
        return sys.modules["trio"].current_time()  # type: ignore[no-any-return]
    loop, clock = _last
    if loop is not None and loop._thread_id == _get_ident():
        return clock()
    loop = _remember_running_loop()
    if loop is not None:
        return loop.time()  # type: ignore[no-any-return]
    return anyio.current_time()


def current_task() -> object:
    """Returns the native task object (asyncio's or trio's) running this code."""
    if _sniffio_local is not None and _sniffio_local.name == "trio":
        return sys.modules["trio"].lowlevel.current_task()
    loop = _last[0]
    if loop is None or loop._thread_id != _get_ident():
        loop = _remember_running_loop()
    task = _task_running_in(loop)
    if task is None:  # pragma: no cover - only reachable outside an event loop
        raise RuntimeError("towerpy services must be used inside a running event loop")
    return task


def time_on(clock: Any) -> float | None:
    """Reads the running clock if it is ``clock`` (an asyncio loop, or a trio run's clock).

    Returns:
        The time, or None when another clock runs (or none): then use `running_clock`.
    """
    if _sniffio_local is not None and _sniffio_local.name == "trio":
        if _trio_clock() is clock:
            return clock.current_time()  # type: ignore[no-any-return]
        return None
    loop, read = _last
    if loop is clock and loop is not None and loop._thread_id == _get_ident():
        return read()
    return None


def running_clock() -> tuple[object, Callable[[], float]] | None:
    """The running clock and the function reading it; None when no event loop runs.

    The clock is the asyncio loop, or the trio run's clock: each has a time of its own.
    """
    if _sniffio_local is not None and _sniffio_local.name == "trio":
        trio_clock = _trio_clock()
        return trio_clock, trio_clock.current_time
    loop = running_loop()
    if loop is None:
        return None
    return loop, _last[1] if _last[0] is loop else loop.time
