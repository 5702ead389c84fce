"""What the running event loop is: its clock and how to schedule work on it from anywhere.

`anyio.current_time()` costs about a microsecond because it looks the backend up on every call;
a limiter reads the clock on every request, so this module answers the same question in a few
tens of nanoseconds. The answer is always the one anyio would give: the asyncio loop's
``time()``, or trio's clock (a ``MockClock`` in tests).
"""

from __future__ import annotations

import sys
from asyncio import _get_running_loop
from asyncio import current_task as _asyncio_current_task
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

_sniffio_local: Any
try:
    from sniffio import thread_local as _sniffio_local
except ImportError:  # pragma: no cover - trio needs sniffio: without it, asyncio is the only choice
    _sniffio_local = None

__all__ = ["current_task", "current_time", "threadsafe_scheduler"]


def _in_trio() -> bool:
    # trio marks its thread for sniffio, which is what anyio consults first as well
    return _sniffio_local is not None and _sniffio_local.name == "trio"


def current_time() -> float:
    """Returns what `anyio.current_time()` returns, without its per-call backend lookup."""
    if not _in_trio():
        loop = _get_running_loop()
        if loop is not None:
            return loop.time()
    return anyio.current_time()


def current_task() -> object:
    """Returns the native task object (asyncio's or trio's) running this code."""
    if _in_trio():
        return sys.modules["trio"].lowlevel.current_task()
    task = _asyncio_current_task()
    if task is None:  # pragma: no cover - only reachable outside an event loop
        raise RuntimeError("towerpy services must be used inside a running event loop")
    return task


def threadsafe_scheduler() -> Callable[[Callable[[], object]], object]:
    """Returns a function, callable from any thread, that runs a callback soon on the current loop.

    Finalizers use it: they may run in any thread and at any point of the loop's own code, so the
    work they trigger must be queued, never done on the spot.
    """
    if _in_trio():
        token = sys.modules["trio"].lowlevel.current_trio_token()
        return token.run_sync_soon  # type: ignore[no-any-return]
    loop = _get_running_loop()
    if loop is None:  # pragma: no cover - only reachable outside an event loop
        raise RuntimeError("towerpy services must be used inside a running event loop")
    return loop.call_soon_threadsafe
