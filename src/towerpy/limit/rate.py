"""RateLimit: a token bucket in front of a service, with per-request costs settled afterwards."""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, Any, TypeVar, final

from typing_extensions import override

from .._callables import callable_name
from .._priority import (
    DEFAULT_AGING,
    check_aging,
    check_priority,
    prioritize,
    priority_before_call,
    priority_of,
)
from .._service import Middleware, Service
from .._validate import check_instance, check_plain_function, check_positive_number
from ..lowlevel import Shed, reserve, take_or_acquire_nowait, try_reserve, wait_for_capacity
from .bucket import RateStatistics, TokenBucket
from .protocols import RateBackend

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RateLimit", "RateLimitLayer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_LAYER = "RateLimitLayer"  # what shares a bucket, for the aging mismatch message
_ONE = 1.0  # the cost of a request when no cost function is given


def _bucket_from(
    who: str,
    rate: float | None,
    per: float,
    burst: float | None,
    cost: object,
    actual_cost: object,
    limiter: RateBackend | None,
) -> RateBackend | None:
    """Checks every argument; returns the shared bucket, or None when ``rate`` is given."""
    if cost is not None:
        check_plain_function("cost", cost)
    if actual_cost is not None:
        check_plain_function("actual_cost", actual_cost)
    if limiter is None:
        if rate is None:
            raise ValueError(
                f"{who} needs rate (a bucket for this service alone) or limiter= (a TokenBucket "
                f"shared between services)"
            )
        # the bucket checks rate, per and burst; this one is built only to check them here
        bucket_burst = TokenBucket(rate, per, burst).burst
    else:
        if rate is not None:
            raise ValueError(
                f"{who} takes rate or limiter=, not both; the TokenBucket already has its rate"
            )
        if per != 1.0 or burst is not None:
            raise ValueError(
                f"{who}: per and burst belong to the shared bucket when limiter= is given; pass "
                f"them to TokenBucket(rate, per=..., burst=...)"
            )
        check_instance("limiter", limiter, RateBackend, "a TokenBucket (or another RateBackend)")
        bucket_burst = limiter.burst
    if cost is None and bucket_burst < _ONE:
        raise ValueError(
            f"burst is {bucket_burst:g}, below the cost of one request (1 token): no request "
            f"could ever pass; give burst >= 1, or a longer period (rate=1, per=2 instead of "
            f"rate=0.5)"
        )
    return limiter


def _cost(value: object, fn: Callable[..., object], which: str) -> float:
    """Returns a cost read from a user's function, or says what is wrong with it."""
    if (type(value) is float or type(value) is int) and 0 <= value < math.inf:
        return value
    if isinstance(value, Real):  # bools are ints: they passed above, or fail below
        number = float(value)
        if 0 <= number < math.inf:
            return number
        raise ValueError(
            f"the {which} function {callable_name(fn)!r} returned {value!r}; a cost must be a "
            f"finite number of tokens >= 0"
        )
    raise TypeError(
        f"the {which} function {callable_name(fn)!r} returned {type(value).__name__} "
        f"{value!r}; a cost must be a finite number of tokens >= 0"
    )


@final
class RateLimit(Middleware[ReqT, RespT], direct_call=True):
    """Admits requests to the inner service at the pace of a token bucket.

    Each request takes ``cost(request)`` tokens (1 without a cost function) from a
    `TokenBucket`; in any window of ``t`` seconds the admitted cost is at most
    ``burst + rate * t / per``. Waiters are admitted first-come first-served, the moment their
    tokens are there, or by priority when ``priority`` is given.

    - ``ready()`` without a cost function waits for one token, reserves it for the calling
      task's next ``call()``, then waits for the inner service. With a cost function it cannot
      know the cost of the next request, so it reserves nothing and only waits for the inner
      service; ``call()`` then waits for the tokens. It does not know the request either: with
      ``priority``, it waits with priority 0.
    - ``call()`` uses the task's reservation or waits for its tokens itself (with the request's
      priority), then calls the inner service. Tokens are spent once a request is admitted: a
      call that fails or is cancelled afterwards does not get them back. With ``actual_cost``,
      the real cost is read from the response and the difference from the estimate is charged
      (the bucket may go into debt, which delays the next admissions) or refunded (which may
      admit the next waiter sooner).
    - An unused reservation is refunded; a task cancelled while waiting takes nothing.

    **Priorities.** With ``priority``, a request that must wait for its tokens waits with the
    priority ``priority(request)`` returns: a higher number is admitted first, equal numbers
    in arrival order (a costly request of a higher priority is not overtaken by cheaper ones of
    a lower). ``aging`` bounds how long a low priority can be passed over: a request of
    priority ``p`` that started waiting at ``t`` is admitted before any request of priority
    ``q`` that starts waiting after ``t + (q - p) * aging``. With the default ``aging=10.0``, each
    priority step is a head start of 10 s; ``aging=None`` makes priorities strict. The function
    is called only for a request that must wait, in the caller's task.

    Args:
        inner: The service to protect.
        rate: Tokens per ``per`` seconds, for a bucket of this service alone.
        per: The period of ``rate`` in seconds.
        burst: The bucket size; defaults to ``rate``.
        cost: Estimates a request's cost in tokens (e.g. the prompt's token count).
        actual_cost: Reads the real cost from the request and its response (e.g. the usage a
            provider reports), to settle the estimate.
        limiter: A `TokenBucket` shared with other services, instead of ``rate``. With
            ``priority``, the bucket admits all its waiters by priority from then on (those of
            other services with priority 0).
        priority: Returns a request's priority (an int; higher goes first), or None for
            first-come first-served.
        aging: Seconds of waiting worth one priority step, or None for strict priorities.

    Raises:
        ValueError: Neither or both of ``rate`` and ``limiter`` are given; ``rate``, ``per`` or
            ``burst`` is not a finite number above 0; ``burst`` is below 1 without a cost
            function; ``aging`` is not a finite number above 0, or not the one the shared
            bucket already uses. At the call: ``cost`` or ``actual_cost`` returned a negative
            or non-finite number.
        TypeError: ``priority`` is not a plain function, or is given with a limiter that is not
            a `TokenBucket` (a Redis bucket orders its waiters itself).
        RequestTooLarge: At the call, a request costs more than ``burst``.
    """

    __slots__ = ("_actual_cost", "_bucket", "_cost", "_priority", "_ranked", "_receipts")
    _towerpy_sheds = True

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        rate: float | None = None,
        per: float = 1.0,
        *,
        burst: float | None = None,
        cost: Callable[[ReqT], float] | None = None,
        actual_cost: Callable[[ReqT, RespT], float] | None = None,
        limiter: RateBackend | None = None,
        priority: Callable[[ReqT], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> None:
        shared = _bucket_from("RateLimit", rate, per, burst, cost, actual_cost, limiter)
        super().__init__(inner)
        self._bucket: RateBackend = (
            shared if shared is not None else TokenBucket(rate, per, burst)  # type: ignore[arg-type]
        )
        self._ranked = prioritize("RateLimit", self._bucket, TokenBucket, _LAYER, priority, aging)
        self._priority = priority
        # A TokenBucket gives receipts for the tokens taken, so that a refund gives back exactly
        # what of them still counts (TokenBucket.refund); other backends get the cost back.
        self._receipts: TokenBucket | None = (
            self._bucket if type(self._bucket) is TokenBucket else None
        )
        self._cost = cost
        self._actual_cost = actual_cost

    @property
    def limiter(self) -> RateBackend:
        """The bucket this service takes its tokens from."""
        return self._bucket

    # A reservation's token is the receipt of its one token (or that cost, _ONE, without
    # receipts): see _refund.

    def _receipt(self) -> float:
        bucket = self._receipts
        return _ONE if bucket is None else bucket.taken

    def _refund(self, cost: float, receipt: float) -> None:
        bucket = self._receipts
        if bucket is None:
            self._bucket.refund(cost)
        else:
            bucket.refund(cost, receipt)

    def _refund_reservation(self, receipt: float) -> None:
        self._refund(_ONE, receipt)

    async def _acquire_one(self) -> float:
        bucket = self._bucket
        if not bucket.acquire_nowait(_ONE):
            await bucket.acquire(_ONE)
        return self._receipt()

    async def _acquire_by_priority(self, cost: float, priority: float) -> float:
        await self._ranked.acquire(cost, priority)  # type: ignore[union-attr]
        return self._receipt()

    async def _try_acquire_one(self) -> float | None:
        return self._receipt() if await self._bucket.try_acquire(_ONE) else None

    def _acquire_nowait(self, cost: float) -> float | None:
        return self._receipt() if self._bucket.acquire_nowait(cost) else None

    async def _acquire(self, cost: float) -> float:
        await self._bucket.acquire(cost)
        return self._receipt()

    async def _try_acquire(self, cost: float) -> float | None:
        return self._receipt() if await self._bucket.try_acquire(cost) else None

    def _acquire_one_nowait(self) -> float | None:
        if self._bucket.acquire_nowait(_ONE):
            receipts = self._receipts  # self._receipt(), inlined: every request's path
            return _ONE if receipts is None else receipts.taken
        return None

    @override
    async def ready(self) -> None:
        if self._cost is not None:
            await self.inner.ready()  # the next request's cost is unknown: nothing to reserve
            return
        await reserve(
            self,
            self._acquire_one,
            self._refund_reservation,
            self.inner,
            self._acquire_one_nowait,
            self._try_acquire_one,
        )

    @override
    async def try_ready(self) -> bool:
        if self._cost is not None:
            return await self.inner.try_ready()
        return await try_reserve(
            self,
            self._try_acquire_one,
            self._refund_reservation,
            self.inner,
            self._acquire_one_nowait,
        )

    @override
    async def call(self, request: ReqT) -> RespT:
        bucket = self._bucket
        if self._cost is None:
            cost = _ONE
            # a reservation's token, or a fresh admission's, is the receipt of its one token
            receipt = take_or_acquire_nowait(self, self._acquire_one_nowait)
            if receipt is None:
                if self._ranked is None:
                    acquire = self._acquire_one
                else:
                    priority = priority_before_call(
                        self._priority,  # type: ignore[arg-type]
                        request,
                        self.inner,
                    )
                    acquire = lambda: self._acquire_by_priority(_ONE, priority)  # noqa: E731
                receipt = await wait_for_capacity(self, acquire, self._try_acquire_one)
        else:  # ready() reserved nothing here: the cost is known only now
            try:
                cost = _cost(self._cost(request), self._cost, "cost")
                # no reservation to take: with a cost function, ready() reserves none
                receipt = self._acquire_nowait(cost)
                if receipt is None:
                    paid = cost  # the cost of this request, for the two functions below
                    if self._ranked is None:
                        acquire = lambda: self._acquire(paid)  # noqa: E731
                    else:
                        level = priority_of(self._priority, request)  # type: ignore[arg-type]
                        acquire = lambda: self._acquire_by_priority(paid, level)  # noqa: E731
                    receipt = await wait_for_capacity(
                        self, acquire, lambda: self._try_acquire(paid)
                    )
            except BaseException:
                self.inner.drop_reservation()  # refused before the call: free what ready() took
                raise
        try:
            response: RespT = await self.inner(request)
        except Shed:
            self._refund(cost, receipt)  # refused further in, under load shedding: never admitted
            raise
        actual_cost = self._actual_cost
        if actual_cost is not None:
            actual = _cost(actual_cost(request, response), actual_cost, "actual_cost")
            if actual > cost:
                bucket.charge(actual - cost)
            elif actual < cost:
                self._refund(cost - actual, receipt)
        return response

    def statistics(self) -> RateStatistics:
        """Returns the bucket's statistics (shared with other services, if it is shared)."""
        return self._bucket.statistics()

    def __repr__(self) -> str:
        return f"RateLimit({self.inner!r}, limiter={self._bucket!r})"


@final
class RateLimitLayer:
    """Wraps services in `RateLimit`.

    Give exactly one of ``rate`` (each service this layer wraps gets its own bucket, full at
    the start) or ``limiter`` (one `TokenBucket` shared by every service it is passed to: one
    budget across agents).

    Args:
        rate: Tokens per ``per`` seconds, per wrapped service.
        per: The period of ``rate`` in seconds (``RateLimitLayer(500, per=60)``: 500 a minute).
        burst: The bucket size; defaults to ``rate``.
        cost: Estimates a request's cost in tokens; default 1 per request.
        actual_cost: Reads the real cost from the request and its response, to settle the
            estimate (token-per-minute limits, where usage is known only afterwards).
        limiter: A shared `TokenBucket`.
        priority: Returns a request's priority (higher is admitted first; see `RateLimit`), or
            None for first-come first-served.
        aging: Seconds of waiting worth one priority step, or None for strict priorities.

    Raises:
        ValueError: See `RateLimit`; raised here, when the layer is made.
        TypeError: ``cost``, ``actual_cost`` or ``priority`` is not a plain function, or
            ``limiter`` is not a bucket (or, with ``priority``, not a `TokenBucket`).

    Example:
        >>> tpm = TokenBucket(40_000, per=60)
        >>> layer = RateLimitLayer(
        ...     limiter=tpm,
        ...     cost=lambda req: estimate_tokens(req),
        ...     actual_cost=lambda req, out: out.usage.total_tokens,
        ... )
    """

    __slots__ = (
        "_actual_cost",
        "_aging",
        "_burst",
        "_cost",
        "_limiter",
        "_per",
        "_priority",
        "_rate",
    )

    def __init__(
        self,
        rate: float | None = None,
        per: float = 1.0,
        *,
        burst: float | None = None,
        cost: Callable[[Any], float] | None = None,
        actual_cost: Callable[[Any, Any], float] | None = None,
        limiter: RateBackend | None = None,
        priority: Callable[[Any], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> None:
        self._limiter = _bucket_from("RateLimitLayer", rate, per, burst, cost, actual_cost, limiter)
        check_priority(priority)
        self._aging = check_aging(aging)
        if self._limiter is not None:
            prioritize("RateLimitLayer", self._limiter, TokenBucket, _LAYER, priority, aging)
        self._rate = None if rate is None else check_positive_number("rate", rate)
        self._per = per
        self._burst = burst
        self._cost = cost
        self._actual_cost = actual_cost
        self._priority = priority

    def layer(self, inner: Service[ReqT, RespT]) -> RateLimit[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `RateLimit`."""
        if self._limiter is not None:
            return RateLimit(
                inner,
                cost=self._cost,
                actual_cost=self._actual_cost,
                limiter=self._limiter,
                priority=self._priority,
                aging=self._aging,
            )
        return RateLimit(
            inner,
            self._rate,
            self._per,
            burst=self._burst,
            cost=self._cost,
            actual_cost=self._actual_cost,
            priority=self._priority,
            aging=self._aging,
        )

    def __repr__(self) -> str:
        priority = "" if self._priority is None else f", priority={self._priority!r}"
        if self._limiter is not None:
            return f"RateLimitLayer(limiter={self._limiter!r}{priority})"
        return f"RateLimitLayer({self._rate:g}, per={self._per:g}, burst={self._burst}{priority})"
