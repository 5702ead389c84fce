"""The asyncio backend: what `towerpy._backend.current` returns while an asyncio loop runs.

Each operation here has its twin, with the same name and signature, in `._trio`.
"""

from __future__ import annotations

import asyncio
import functools
from asyncio import CancelledError, _get_running_loop
from asyncio import current_task as _asyncio_current_task
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio

from . import _anyio, _cancel
from ._deadlines import DeadlineQueue
from ._fanout import AsyncioFanOut
from ._running import running_loop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._types import Alarm, Deadlines, Waiter

__all__ = [
    "NAME",
    "WAKES_IN_ORDER",
    "call_with_deadline",
    "call_with_timeout",
    "fan_out",
    "new_alarm",
    "new_waiter",
    "on_task_exit",
    "run_cancellable",
    "spawn_system_task",
    "stray_cancellation",
    "threadsafe_scheduler",
]

RespT = TypeVar("RespT")

NAME: Final = "asyncio"
WAKES_IN_ORDER: Final = True  # tasks woken together run in the order they were woken

fan_out = AsyncioFanOut
run_cancellable = _cancel.run_asyncio

# asyncio keeps only weak references to tasks: the system tasks started here live in this set
_SYSTEM_TASKS: Final[set[asyncio.Task[Any]]] = set()


@final
class _FutureWaiter:
    """A bare future, which a cancellation of the waiting task cancels."""

    __slots__ = ("_future",)

    def __init__(self, loop: Any) -> None:
        self._future = loop.create_future()

    def wait(self) -> Awaitable[object]:
        return self._future  # type: ignore[no-any-return]

    def wake(self) -> bool:
        if self._future.done():  # cancelled: its task is leaving
            return False
        self._future.set_result(None)
        return True

    @property
    def woken(self) -> bool:
        return self._future.done() and not self._future.cancelled()


def new_waiter() -> Waiter:
    """Returns a waiter for the current task."""
    return _FutureWaiter(running_loop())


def _ring(future: Any, value: bool) -> None:
    if not future.done():
        future.set_result(value)


@final
class _TimerAlarm:
    """A future that a loop timer resolves at the deadline."""

    __slots__ = ("_future", "_loop")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._future: Any = None

    async def sleep_until(self, deadline: float) -> bool:
        future = self._future = self._loop.create_future()
        # call_at, not call_later: the timer fires at the deadline itself, not at a rounded sum
        timer = self._loop.call_at(deadline, _ring, future, True)
        try:
            passed: bool = await future
        finally:
            timer.cancel()
            self._future = None
        return passed

    def wake(self) -> None:
        if self._future is not None:
            _ring(self._future, False)


def new_alarm() -> Alarm:
    """Returns an alarm for the current task."""
    return _TimerAlarm(running_loop())


def threadsafe_scheduler() -> Callable[[Callable[[], object]], object]:
    """Returns a function, callable from any thread, that runs a callback soon on this loop."""
    loop = _get_running_loop()
    if loop is None:  # pragma: no cover - only reachable outside an event loop
        raise RuntimeError("towerpy services must be used inside a running event loop")
    return loop.call_soon_threadsafe


def _call_when_done(callback: Callable[[], object], _task: object) -> None:
    callback()


def on_task_exit(task: Any, callback: Callable[[], object], what: str) -> None:
    """Calls ``callback()`` once ``task`` has ended (``what`` names it in error reports)."""
    task.add_done_callback(functools.partial(_call_when_done, callback))


async def call_with_deadline(
    deadlines: Deadlines, call: Callable[[Any], Awaitable[RespT]], request: Any
) -> RespT:
    """Runs ``call(request)``; raises ``deadlines.expired()`` once the limit has passed.

    One timer for all the calls of one `Timeout` (see `._deadlines`), the task cancelled
    natively; through an anyio cancel scope when anyio's internals are not there to read.
    """
    if not _anyio.READABLE:
        return await _call_in_anyio_scope(deadlines, call, request)
    loop: Any = running_loop()
    task: Any = _asyncio_current_task(loop)
    queue = deadlines.queue
    if queue is None or queue.loop is not loop:
        queue = deadlines.queue = DeadlineQueue(loop, deadlines.seconds)
    entry = queue.push(task)
    try:
        result: RespT = await call(request)
    except CancelledError as exc:
        if entry.fired and task.uncancel() <= entry.cancelling:
            raise deadlines.expired() from exc
        raise  # someone else's cancellation (too): it goes on
    except BaseException:
        if entry.fired:  # the call swallowed our cancellation: take the request back
            task.uncancel()
        raise
    finally:
        queue.finish(entry)
    if entry.fired:
        task.uncancel()
    return result


async def _call_in_anyio_scope(
    deadlines: Deadlines, call: Callable[[Any], Awaitable[RespT]], request: Any
) -> RespT:
    _anyio.scopes_readable()  # warns, once
    cancelled: BaseException | None = None
    with anyio.CancelScope(deadline=anyio.current_time() + deadlines.seconds):
        try:
            result: RespT = await call(request)
        except CancelledError as exc:
            cancelled = exc
            raise
        return result
    # only reached when the scope caught its own cancellation: the limit passed
    raise deadlines.expired() from cancelled


async def call_with_timeout(
    seconds: float, call: Callable[..., Awaitable[RespT]], *args: Any
) -> RespT:
    """Returns ``await call(*args)``; raises `TimeoutError` if that takes over ``seconds``."""
    async with asyncio.timeout(seconds):  # half of what anyio.fail_after costs on asyncio
        return await call(*args)


def spawn_system_task(run: Callable[..., Awaitable[object]], *args: Any) -> None:
    """Starts ``run(*args)`` in a task of its own, outside the caller's cancel scopes."""
    task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(run(*args))  # type: ignore[arg-type]
    _SYSTEM_TASKS.add(task)
    task.add_done_callback(_SYSTEM_TASKS.discard)


def stray_cancellation(error: BaseException) -> bool:
    """Tells a cancellation exception that no cancellation of this task caused."""
    if not isinstance(error, CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and not task.cancelling()
