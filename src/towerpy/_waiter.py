"""One task waiting to be woken by another: the cheapest primitive each backend offers.

A limiter's waiters are woken one at a time, in order, by whoever gives capacity back.
`anyio.Event` looks the backend up each time one is made; these do not. On asyncio a waiter
is a bare future, which a cancellation of the waiting task cancels: `Waiter.wake` then reports
that nobody was woken, so the capacity goes to the next waiter instead.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol, final

from ._runtime import _in_trio, running_loop

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["Waiter", "new_waiter"]


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
