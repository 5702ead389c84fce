"""The trio backend: what `towerpy._backend.current` returns while trio runs.

Each operation here has its twin, with the same name and signature, in `._asyncio`. trio is
imported only by whoever runs it: this module reaches it through ``sys.modules``.
"""

from __future__ import annotations

import contextvars
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio

from . import _cancel
from ._fanout import TrioFanOut

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

NAME: Final = "trio"
WAKES_IN_ORDER: Final = False  # trio runs the tasks it wakes together in either order

fan_out = TrioFanOut
run_cancellable = _cancel.run_trio


@final
class _EventWaiter:
    __slots__ = ("_event",)

    def __init__(self, event: Any) -> None:
        self._event = event

    def wait(self) -> Awaitable[object]:
        return self._event.wait()  # type: ignore[no-any-return]

    def wake(self) -> bool:
        self._event.set()  # a trio task cancelled while waiting checks `woken` as it leaves
        return True

    @property
    def woken(self) -> bool:
        return self._event.is_set()  # type: ignore[no-any-return]


def new_waiter() -> Waiter:
    """Returns a waiter for the current task."""
    return _EventWaiter(sys.modules["trio"].Event())


@final
class _ScopeAlarm:
    """A sleep in a cancel scope."""

    __slots__ = ("_scope", "_trio")

    def __init__(self, trio: Any) -> None:
        self._trio = trio
        self._scope: Any = None

    async def sleep_until(self, deadline: float) -> bool:
        with self._trio.CancelScope() as scope:
            self._scope = scope
            try:
                await self._trio.sleep_until(deadline)
            finally:
                self._scope = None
        return not scope.cancelled_caught

    def wake(self) -> None:
        if self._scope is not None:
            self._scope.cancel()


def new_alarm() -> Alarm:
    """Returns an alarm for the current task."""
    return _ScopeAlarm(sys.modules["trio"])


def threadsafe_scheduler() -> Callable[[Callable[[], object]], object]:
    """Returns a function, callable from any thread, that runs a callback soon in this run."""
    token = sys.modules["trio"].lowlevel.current_trio_token()
    return token.run_sync_soon  # type: ignore[no-any-return]


@final
class _TaskExits:
    """A trio instrument: calls the callback of a watched task when the task exits.

    One per trio run; only watched tasks have a callback, and only ``task_exited`` is hooked, so
    no other task and no other scheduling step pays for it.
    """

    def __init__(self) -> None:
        self.watched: dict[object, tuple[Callable[[], object], str]] = {}

    def task_exited(self, task: object) -> None:
        watched = self.watched.pop(task, None)
        if watched is None:
            return
        callback, what = watched
        try:
            callback()
        except BaseException as exc:  # trio would drop this instrument: report, keep watching
            sys.unraisablehook(
                SimpleNamespace(  # the attributes of sys.UnraisableHookArgs
                    exc_type=type(exc),
                    exc_value=exc,
                    exc_traceback=exc.__traceback__,
                    err_msg=f"towerpy: {what}",
                    object=task,
                )
            )


_task_exits: Any = None  # the RunVar holding each trio run's _TaskExits


def on_task_exit(task: Any, callback: Callable[[], object], what: str) -> None:
    """Calls ``callback()`` once ``task`` has exited (``what`` names it in error reports)."""
    global _task_exits
    trio: Any = sys.modules["trio"]
    if _task_exits is None:
        _task_exits = trio.lowlevel.RunVar("towerpy_task_exits")
    exits = _task_exits.get(None)
    if exits is None:
        exits = _TaskExits()
        trio.lowlevel.add_instrument(exits)
        _task_exits.set(exits)
    exits.watched[task] = (callback, what)


async def call_with_deadline(
    deadlines: Deadlines, call: Callable[[Any], Awaitable[RespT]], request: Any
) -> RespT:
    """Runs ``call(request)``; raises ``deadlines.expired()`` once the limit has passed."""
    trio: Any = sys.modules["trio"]
    cancelled: BaseException | None = None
    with trio.CancelScope(deadline=trio.current_time() + deadlines.seconds):
        try:
            result: RespT = await call(request)
        except trio.Cancelled as exc:
            cancelled = exc
            raise
        return result
    # only reached when the scope caught its own cancellation: the limit passed
    raise deadlines.expired() from cancelled


async def call_with_timeout(
    seconds: float, call: Callable[..., Awaitable[RespT]], *args: Any
) -> RespT:
    """Returns ``await call(*args)``; raises `TimeoutError` if that takes over ``seconds``."""
    with anyio.fail_after(seconds):
        return await call(*args)


def spawn_system_task(run: Callable[..., Awaitable[object]], *args: Any) -> None:
    """Starts ``run(*args)`` in a task of its own, outside the caller's cancel scopes."""
    lowlevel = sys.modules["trio"].lowlevel
    host = lowlevel.disable_ki_protection(run)  # Ctrl+C reaches the code it runs
    lowlevel.spawn_system_task(host, *args, context=contextvars.copy_context())


def stray_cancellation(error: BaseException) -> bool:
    """Returns False: trio raises Cancelled only for a cancellation of the task's scopes."""
    return False
