"""ConcurrencyLimit: at most N requests in flight, with a limiter several services can share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, final

from typing_extensions import override

from .. import _observe
from .._priority import (
    DEFAULT_AGING,
    PriorityLine,
    check_aging,
    check_priority,
    prioritize,
    priority_before_call,
    ranked_line,
)
from .._service import Middleware, Service
from .._validate import check_instance, check_positive_int
from .._waiter import Permits
from ..lowlevel import reserve, take_or_acquire_nowait, try_reserve, wait_for_capacity
from .protocols import ConcurrencyBackend, ConcurrencyStatistics

if TYPE_CHECKING:
    from collections.abc import Callable

_LAYER = "ConcurrencyLimitLayer"  # what shares a limiter, for the aging mismatch message

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

    Once a `ConcurrencyLimitLayer` with ``priority=`` is given this limiter, its waiters are
    served by priority instead, with that layer's ``aging``: ``acquire(priority)`` waits with a
    priority, and waiters of every other service sharing it wait with priority 0.

    Args:
        max_in_flight: How many permits there are (>= 1).

    Raises:
        ValueError: ``max_in_flight`` is below 1.
        TypeError: ``max_in_flight`` is not an int.
    """

    __slots__ = ("_line", "_max", "_permits")

    def __init__(self, max_in_flight: int) -> None:
        self._max = check_positive_int("max_in_flight", max_in_flight)
        self._permits = Permits(self._max)
        self._line: PriorityLine[Any] | None = None  # the waiters' line, once by priority

    def _by_priority(self, aging: float | None) -> None:
        """Serves the waiters by priority from now on; those waiting stay first.

        `towerpy._priority.prioritize` has checked ``aging`` against a line it may have already.
        """
        if self._line is None:
            permits = self._permits
            permits.queue = self._line = ranked_line(permits.queue, aging)

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

    async def acquire(self, priority: float = 0) -> object:
        """Waits for a permit, in arrival order, and takes it.

        A task cancelled while waiting holds no permit afterwards.

        Args:
            priority: The waiter's priority (higher goes first), once the limiter serves by
                priority; until then, all wait in arrival order.
        """
        line = self._line
        take = self._permits.take() if line is None else self._permits.take(line.rank(priority))
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
    exceed the limit. Waiters are served first-come first-served, or by priority when
    ``priority`` is given.

    - ``ready()`` waits for a permit and reserves it for the calling task's next ``call()``,
      then waits for the inner service to be ready. It does not know the request: with
      ``priority``, it waits with priority 0.
    - ``call()`` uses the task's reservation, or waits for a permit itself (with the request's
      priority); the permit is given back when the call returns, raises or is cancelled.
      Cancelled while waiting, it holds none.
    - ``try_ready()`` reserves a permit only if one is free at once.

    **Priorities.** With ``priority``, a request that must wait waits with the priority
    ``priority(request)`` returns: a higher number is admitted first, equal numbers in arrival
    order. ``aging`` bounds how long a low priority can be passed over: a request of priority
    ``p`` that started waiting at ``t`` is admitted before any request of priority ``q`` that
    starts waiting after ``t + (q - p) * aging``. With the default ``aging=10.0``, each priority
    step is a head start of 10 s; ``aging=None`` makes priorities strict (a steady stream of high
    priorities then starves the low ones). The function is called only for a request that must
    wait, in the caller's task (`towerpy.util.context_priority` reads a priority the caller set
    with `towerpy.util.priority_scope`).

    It raises nothing of its own: the inner service's errors pass through unchanged; the
    priority function's errors are raised by ``call()``.

    Args:
        inner: The service to protect.
        max_in_flight: The limit, for this service alone.
        limiter: A `ConcurrencyLimiter` shared with other services, instead of ``max_in_flight``.
            With ``priority``, the limiter serves all its waiters by priority from then on
            (those of other services with priority 0).
        priority: Returns a request's priority (an int; higher goes first), or None for
            first-come first-served.
        aging: Seconds of waiting worth one priority step, or None for strict priorities.

    Raises:
        ValueError: Neither or both of ``max_in_flight`` and ``limiter`` are given,
            ``max_in_flight`` is below 1, ``aging`` is not a finite number above 0, or the
            shared limiter already serves by priority with another ``aging``.
        TypeError: ``priority`` is not a plain function, or is given with a limiter that is not
            a `ConcurrencyLimiter` (a Redis limiter orders its waiters itself).
    """

    __slots__ = ("_limiter", "_priority", "_ranked")
    _towerpy_sheds = True

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        max_in_flight: int | None = None,
        *,
        limiter: ConcurrencyBackend | None = None,
        priority: Callable[[ReqT], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> None:
        shared = _limiter_from("ConcurrencyLimit", max_in_flight, limiter)
        super().__init__(inner)
        self._limiter: ConcurrencyBackend = (
            shared if shared is not None else ConcurrencyLimiter(max_in_flight)  # type: ignore[arg-type]
        )
        self._ranked = prioritize(
            "ConcurrencyLimit", self._limiter, ConcurrencyLimiter, _LAYER, priority, aging
        )
        self._priority = priority

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
            if self._ranked is None:
                permit = await wait_for_capacity(self, limiter.acquire, limiter.try_acquire)
            else:
                permit = await self._wait_by_priority(self._ranked, request)
        try:
            result: RespT = await self.inner(request)
        finally:
            limiter.release(permit)
        return result

    async def _wait_by_priority(self, limiter: ConcurrencyLimiter, request: ReqT) -> object:
        priority = priority_before_call(
            self._priority,  # type: ignore[arg-type]
            request,
            self.inner,
        )
        return await wait_for_capacity(self, lambda: limiter.acquire(priority), limiter.try_acquire)

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
        priority: Returns a request's priority (higher is admitted first; see `ConcurrencyLimit`),
            or None for first-come first-served.
        aging: Seconds of waiting worth one priority step, or None for strict priorities.

    Raises:
        ValueError: Neither or both are given, ``max_in_flight`` is below 1, or ``aging`` is
            not a finite number above 0 (or not the one the shared limiter already uses).
        TypeError: ``max_in_flight`` is not an int, ``limiter`` is not a limiter, or
            ``priority`` is not a plain function (or is given with a Redis limiter).

    Example:
        >>> model = ServiceBuilder().layer(ConcurrencyLimitLayer(4)).service(step)
        >>> interactive_first = ConcurrencyLimitLayer(4, priority=context_priority)
    """

    __slots__ = ("_aging", "_limiter", "_max_in_flight", "_priority")

    def __init__(
        self,
        max_in_flight: int | None = None,
        *,
        limiter: ConcurrencyBackend | None = None,
        priority: Callable[[Any], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> None:
        self._limiter = _limiter_from("ConcurrencyLimitLayer", max_in_flight, limiter)
        check_priority(priority)
        self._aging = check_aging(aging)
        if self._limiter is not None:
            prioritize(
                "ConcurrencyLimitLayer", self._limiter, ConcurrencyLimiter, _LAYER, priority, aging
            )
        self._max_in_flight = max_in_flight
        self._priority = priority

    def layer(self, inner: Service[ReqT, RespT]) -> ConcurrencyLimit[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `ConcurrencyLimit`."""
        if self._limiter is not None:
            return ConcurrencyLimit(
                inner, limiter=self._limiter, priority=self._priority, aging=self._aging
            )
        return ConcurrencyLimit(
            inner, self._max_in_flight, priority=self._priority, aging=self._aging
        )

    def __repr__(self) -> str:
        priority = "" if self._priority is None else f", priority={self._priority!r}"
        if self._limiter is not None:
            return f"ConcurrencyLimitLayer(limiter={self._limiter!r}{priority})"
        return f"ConcurrencyLimitLayer({self._max_in_flight}{priority})"
