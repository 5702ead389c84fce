"""What the backends' operations hand out: waiters, alarms, cancellable calls' handles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Alarm", "Cancellable", "Deadlines", "Waiter"]


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


class Cancellable(Protocol):
    """The handle of a call that `run_cancellable` runs and `cancel` may cancel.

    The backend keeps its state in it: on asyncio the caller's task and its cancellation count,
    elsewhere a cancel scope; ``fired`` once `cancel` has cancelled the call.
    """

    request: Any
    task: Any
    cancelling: int
    scope: Any
    fired: bool


class Deadlines:
    """The time limit of one `Timeout`, and what the backend keeps for it between calls.

    Attributes:
        seconds: The limit of each call.
        expired: Makes the exception a call raises when its limit passed.
        queue: The backend's state (on asyncio, the call deadlines of the last loop used).
    """

    __slots__ = ("expired", "queue", "seconds")

    def __init__(self, seconds: float, expired: Callable[[], BaseException]) -> None:
        self.seconds = seconds
        self.expired = expired
        self.queue: Any = None
