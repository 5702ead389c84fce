"""ConcurrencyLimit: at most N requests in flight, with a limiter several services can share."""

from __future__ import annotations

from typing import TypeVar, final

from typing_extensions import override

from .. import _observe
from .._service import Middleware, Service
from .._validate import check_instance, check_positive_int
from .._waiter import Permits
from ..lowlevel import reserve, take_or_acquire_nowait, try_reserve, wait_for_capacity
from .protocols import ConcurrencyBackend, ConcurrencyStatistics

__all__ = [
    "ConcurrencyLimit",
    "ConcurrencyLimitLayer",
    "ConcurrencyLimiter",
    "ConcurrencyStatistics",
]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_PERMIT = True  # the in-memory limiter's permits are interchangeable


@final
class ConcurrencyLimiter:
    """A count of permits, shared by every service it is passed to.

    Pass one object to several `ConcurrencyLimitLayer` (``limiter=``) to bound them together:
    e.g. at most 8 model calls in flight across every agent of a process. Waiters are served
    first-come first-served: a permit given back while tasks wait goes straight to the first
    of them, and newcomers never overtake them.

    Args:
        max_in_flight: How many permits there are (>= 1).

    Raises:
        ValueError: ``max_in_flight`` is below 1.
        TypeError: ``max_in_flight`` is not an int.
    """

    __slots__ = ("_max", "_permits")

    def __init__(self, max_in_flight: int) -> None:
        self._max = check_positive_int("max_in_flight", max_in_flight)
        self._permits = Permits(self._max)

    @property
    def max_in_flight(self) -> int:
        """How many permits there are."""
        return self._max

    def acquire_nowait(self) -> object | None:
        """Takes a permit if one is free and nobody waits; returns it, or None."""
        permits = self._permits
        if permits.available and not permits.queue:  # Permits.take_nowait, without the call
            permits.available -= 1
            return _PERMIT
        return None

    async def acquire(self) -> object:
        """Waits for a permit, in arrival order, and takes it.

        A task cancelled while waiting holds no permit afterwards.
        """
        take = self._permits.take()
        await (take if _observe.wait is None else _observe.wait("concurrency_limit", take))
        return _PERMIT

    async def try_acquire(self) -> object | None:
        """Takes a permit if one is free and nobody waits; returns it, or None."""
        return self.acquire_nowait()

    def release(self, permit: object) -> None:
        """Gives a permit back: to the first waiter if there is one.

        Raises:
            RuntimeError: More permits were given back than were taken.
        """
        permits = self._permits
        if permits.queue:
            permits.give()  # to the first waiter
        elif permits.available < self._max:
            permits.available += 1  # Permits.give with nobody waiting, without the call
        else:
            raise RuntimeError("ConcurrencyLimiter.release() called more times than acquire()")

    @property
    def idle(self) -> bool:
        """Whether every permit is free and nobody waits."""
        return self._permits.available == self._max and not self._permits.queue

    def statistics(self) -> ConcurrencyStatistics:
        """Returns the limit, the permits out and the number of waiting tasks."""
        permits = self._permits
        return ConcurrencyStatistics(self._max, self._max - int(permits.available), permits.waiting)

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"ConcurrencyLimiter(max_in_flight={stats.max_in_flight}, "
            f"in_flight={stats.in_flight}, waiting={stats.waiting})"
        )


def _limiter_from(
    who: str, max_in_flight: int | None, limiter: ConcurrencyBackend | None
) -> ConcurrencyBackend | None:
    """Checks the exactly-one-of rule; returns the shared limiter, or None for a count."""
    if limiter is None:
        if max_in_flight is None:
            raise ValueError(
                f"{who} needs max_in_flight (a count for this service alone) or limiter= "
                f"(a ConcurrencyLimiter shared between services)"
            )
        check_positive_int("max_in_flight", max_in_flight)
        return None
    if max_in_flight is not None:
        raise ValueError(
            f"{who} takes max_in_flight or limiter=, not both; the limiter already has its "
            f"max_in_flight"
        )
    check_instance(
        "limiter",
        limiter,
        ConcurrencyBackend,
        "a ConcurrencyLimiter (or another ConcurrencyBackend)",
    )
    return limiter


@final
class ConcurrencyLimit(Middleware[ReqT, RespT], direct_call=True):
    """Enforces a limit on the requests in flight in the inner service.

    At any instant, permits out (running calls plus reservations made by ``ready()``) never
    exceed the limit. Waiters are served first-come first-served.

    - ``ready()`` waits for a permit and reserves it for the calling task's next ``call()``,
      then waits for the inner service to be ready.
    - ``call()`` uses the task's reservation, or waits for a permit itself; the permit is given
      back when the call returns, raises or is cancelled. Cancelled while waiting, it holds none.
    - ``try_ready()`` reserves a permit only if one is free at once.

    It raises nothing of its own: the inner service's errors pass through unchanged.

    Args:
        inner: The service to protect.
        max_in_flight: The limit, for this service alone.
        limiter: A `ConcurrencyLimiter` shared with other services, instead of ``max_in_flight``.

    Raises:
        ValueError: Neither or both of ``max_in_flight`` and ``limiter`` are given, or
            ``max_in_flight`` is below 1.
    """

    __slots__ = ("_limiter",)
    _towerpy_sheds = True

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        max_in_flight: int | None = None,
        *,
        limiter: ConcurrencyBackend | None = None,
    ) -> None:
        shared = _limiter_from("ConcurrencyLimit", max_in_flight, limiter)
        super().__init__(inner)
        self._limiter: ConcurrencyBackend = (
            shared if shared is not None else ConcurrencyLimiter(max_in_flight)  # type: ignore[arg-type]
        )

    @property
    def limiter(self) -> ConcurrencyBackend:
        """The limiter this service takes its permits from."""
        return self._limiter

    @override
    async def ready(self) -> None:
        limiter = self._limiter
        await reserve(
            self,
            limiter.acquire,
            limiter.release,
            self.inner,
            limiter.acquire_nowait,
            limiter.try_acquire,
        )

    @override
    async def try_ready(self) -> bool:
        limiter = self._limiter
        return await try_reserve(
            self, limiter.try_acquire, limiter.release, self.inner, limiter.acquire_nowait
        )

    @override
    async def call(self, request: ReqT) -> RespT:
        limiter = self._limiter
        permit = take_or_acquire_nowait(self, limiter.acquire_nowait)
        if permit is None:
            permit = await wait_for_capacity(self, limiter.acquire, limiter.try_acquire)
        try:
            result: RespT = await self.inner(request)
        finally:
            limiter.release(permit)
        return result

    def statistics(self) -> ConcurrencyStatistics:
        """Returns the limiter's statistics (shared with other services, if it is shared)."""
        return self._limiter.statistics()

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.inner!r}, limiter={self._limiter!r})"


@final
class ConcurrencyLimitLayer:
    """Wraps services in `ConcurrencyLimit`.

    Give exactly one of ``max_in_flight`` (each service this layer wraps gets its own count) or
    ``limiter`` (one `ConcurrencyLimiter` shared by every service it is passed to).

    Args:
        max_in_flight: The limit per wrapped service.
        limiter: A shared `ConcurrencyLimiter`.

    Raises:
        ValueError: Neither or both are given, or ``max_in_flight`` is below 1.
        TypeError: ``max_in_flight`` is not an int, or ``limiter`` is not a limiter.

    Example:
        >>> model = ServiceBuilder().layer(ConcurrencyLimitLayer(4)).service(step)
    """

    __slots__ = ("_limiter", "_max_in_flight")

    def __init__(
        self, max_in_flight: int | None = None, *, limiter: ConcurrencyBackend | None = None
    ) -> None:
        self._limiter = _limiter_from("ConcurrencyLimitLayer", max_in_flight, limiter)
        self._max_in_flight = max_in_flight

    def layer(self, inner: Service[ReqT, RespT]) -> ConcurrencyLimit[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `ConcurrencyLimit`."""
        if self._limiter is not None:
            return ConcurrencyLimit(inner, limiter=self._limiter)
        return ConcurrencyLimit(inner, self._max_in_flight)

    def __repr__(self) -> str:
        if self._limiter is not None:
            return f"ConcurrencyLimitLayer(limiter={self._limiter!r})"
        return f"ConcurrencyLimitLayer({self._max_in_flight})"
