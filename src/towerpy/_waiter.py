"""One task waiting to be woken by another: the cheapest primitives each backend offers.

A limiter's waiters are woken one at a time, in order, by whoever gives capacity back.
`anyio.Event` looks the backend up each time one is made; these do not. On asyncio a waiter
is a bare future, which a cancellation of the waiting task cancels: `Waiter.wake` then reports
that nobody was woken, so the capacity goes to the next waiter instead.

An `Alarm` is a sleep until a deadline that another task may cut short: the first waiter of a
token bucket sleeps on one until its tokens are due, and a refund wakes it early. On asyncio it
is a future that a loop timer resolves at the deadline; on trio, a sleep in a cancel scope.
Neither raises on the common path (the deadline passes).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol, final

from ._runtime import _in_trio, running_loop

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["Alarm", "Waiter", "new_alarm", "new_waiter"]


class Waiter(Protocol):
    """A task waiting to be woken once."""

    def wait(self) -> Awaitable[object]:
        """Returns what to await until `wake` is called."""
        ...

    def wake(self) -> bool:
        """Wakes the waiting task; False if it already left (cancelled), so nobody was woken."""
        ...

    @property
    def woken(self) -> bool:
        """Whether `wake` reached the task (it may have been cancelled right after)."""
        ...


@final
class _FutureWaiter:
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
    """Returns a waiter for the current task, on the running backend."""
    if _in_trio():
        return _EventWaiter(sys.modules["trio"].Event())
    return _FutureWaiter(running_loop())


class Alarm(Protocol):
    """A sleep until a deadline, which `wake` may cut short."""

    async def sleep_until(self, deadline: float) -> bool:
        """Sleeps until ``deadline`` (on the loop's clock).

        Returns:
            True when the deadline passed; False when `wake` cut the sleep short.
        """
        ...

    def wake(self) -> None:
        """Ends the current sleep now, if there is one."""
        ...


def _ring(future: Any, value: bool) -> None:
    if not future.done():
        future.set_result(value)


@final
class _TimerAlarm:
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


@final
class _ScopeAlarm:
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
    """Returns an alarm for the current task, on the running backend."""
    if _in_trio():
        return _ScopeAlarm(sys.modules["trio"])
    return _TimerAlarm(running_loop())
