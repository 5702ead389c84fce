"""ProviderQuota: run at a provider's quota, learned from its headers, one pause for the herd.

A provider limits each key's requests and tokens per minute, with a bucket of its own. The
layer keeps two budgets in front of the step service, charges each call before it is sent
(one request, and its estimated tokens), settles the tokens with the usage the answer reports,
follows the limits and the remaining levels the provider reports in its headers, and turns a
429 seen by any caller into one pause for every caller of the quota, instead of a retry storm.
docs/provider_quota.md tells the whole story.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, final

from typing_extensions import override

from .._service import Middleware, Service
from ..lowlevel import Shed, refuse_if_shedding
from ._quota import ProviderQuotaStatistics, Quota
from .estimate import estimate_tokens
from .messages import ChatRequest

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..limit.protocols import RateBackend

__all__ = ["ProviderQuota", "ProviderQuotaLayer", "ProviderQuotaStatistics"]

ChatRequestT = TypeVar("ChatRequestT", bound=ChatRequest)
RespT = TypeVar("RespT")


@final
class ProviderQuota(Middleware[ChatRequestT, RespT], direct_call=True):
    """Keeps a step service within its provider's quota of requests and tokens per period.

    Each call takes one request from the request budget and ``estimate(request)`` tokens from
    the token budget before it is sent; callers wait their turn first-come first-served. When
    the answer comes, its reported usage settles the tokens (the difference is refunded or
    charged as debt), and with ``learn`` the budgets follow the limits and the remaining
    levels that the provider's headers report (``StepOutcome.rate_limits``).

    A 429 (`RateLimited`) seen by any caller pauses every caller of the quota until its
    ``retry_after`` (or, when it gives none, 1 s, doubling while 429s follow one another, up to
    ``max_pause``) has passed; the failing call's error still propagates, to a `RetryLayer`
    outside, whose retry then waits its turn behind the callers already waiting.

    - ``ready()`` reserves nothing (a call's token cost is known only with its request) and
      waits for the inner service only; ``try_ready()`` is False while the quota is paused or
      others wait.
    - ``call()`` waits for the pause, the budgets (and, while a limit is being learned, for
      the one call in flight that learns it), then calls the inner service. Tokens are spent
      once a call is admitted; a call that fails keeps them spent, a call refused further in
      (load shedding) gets them back.

    Build it with `ProviderQuotaLayer`, which shares one quota between every service it wraps;
    made directly, the service has a quota of its own.

    Args:
        inner: The step service.
        requests: The request budget (see `ProviderQuotaLayer`).
        tokens: The token budget.
        per: The period of the numbers and of the reported limits, in seconds.
        estimate: Estimates a request's tokens before it is sent.
        learn: Follow what the provider reports.
        max_pause: The longest pause one 429 makes, in seconds.
        reserve: With ``learn``, the share of each budget held back.

    Raises:
        ValueError: See `ProviderQuotaLayer`. At the call, ``estimate`` returned a negative or
            non-finite number.
        TypeError: See `ProviderQuotaLayer`.
        RequestTooLarge: At the call, an estimate above what the token budget holds.
    """

    __slots__ = ("_quota",)
    _towerpy_sheds = True

    def __init__(
        self,
        inner: Service[ChatRequestT, RespT],
        requests: float | RateBackend | None = None,
        tokens: float | RateBackend | None = None,
        *,
        per: float = 60.0,
        estimate: Callable[[ChatRequest], float] = estimate_tokens,
        learn: bool = True,
        max_pause: float = 60.0,
        reserve: float = 0.1,
    ) -> None:
        super().__init__(inner)
        self._quota = Quota(requests, tokens, per, estimate, learn, max_pause, reserve)

    @classmethod
    def _sharing(cls, inner: Service[ChatRequestT, RespT], quota: Quota) -> ProviderQuota[Any, Any]:
        service: ProviderQuota[Any, Any] = cls.__new__(cls)
        Middleware.__init__(service, inner)
        service._quota = quota
        return service

    @override
    async def try_ready(self) -> bool:
        if self._quota.blocked():
            return False
        return await self.inner.try_ready()

    @override
    async def call(self, request: ChatRequestT) -> RespT:
        quota = self._quota
        try:
            cost = quota.cost_of(request)
            admission = quota.admit_nowait(cost)
            if admission is None:
                refuse_if_shedding(self)
                admission = await quota.admit(cost)
        except BaseException:
            self.inner.drop_reservation()  # refused before the call: free what ready() took
            raise
        try:
            response: RespT = await self.inner(request)
        except Shed:
            quota.give_back(admission)  # refused further in, under load shedding: never sent
            raise
        except BaseException as exc:
            await quota.failed(admission, exc)
            raise
        quota.answered(admission, response)
        return response

    def statistics(self) -> ProviderQuotaStatistics:
        """Returns the quota's statistics (shared with the layer's other services)."""
        return self._quota.statistics()

    def __repr__(self) -> str:
        return f"ProviderQuota({self.inner!r}, {self._quota.describe()})"


@final
class ProviderQuotaLayer:
    """Wraps step services in `ProviderQuota`: one provider quota, shared by all of them.

    Every service this layer wraps shares its budgets and its pause: make one layer per API
    key (and model, where the provider limits each model apart), and wrap every agent's step
    service in it. To share a quota between processes, give `RedisTokenBucket` budgets.

    Args:
        requests: The request budget: a number of requests per ``per`` seconds, a
            `TokenBucket` or another `RateBackend` (a `RedisTokenBucket` for a fleet), or None:
            with ``learn``, the limit the provider reports; without, no request limit.
        tokens: The token budget, the same way (tokens per ``per`` seconds).
        per: The period of the numbers, and of the limits the provider reports: 60 seconds at
            OpenAI and Anthropic (their limits are per minute).
        estimate: A plain function estimating a request's tokens before it is sent
            (default: `estimate_tokens`).
        learn: Follow what the provider reports in its headers: a budget the layer made from a
            number, or from nothing, takes the limit the provider reports (up or down); every
            in-process bucket is lowered to what the provider says remains. A budget with no
            number starts with one call in flight, and opens on its first answer. A bucket you
            give keeps its rate.
        max_pause: The longest pause one 429 makes, in seconds: a longer ``retry_after`` (a
            daily quota) pauses this long, then one call tries again.
        reserve: With ``learn``, the share of each budget held back: a bucket made from a
            number starts that much short of full, and every bucket is kept that much below
            what the provider says remains. It is room for what the estimates miss (a
            provider counts with its own tokenizer, and counts ``max_tokens`` up front) and for
            other clients of the key. It lowers the level, not the rate: the quota's
            throughput is the same.

    Raises:
        ValueError: A number that is not finite and above 0, a request budget below 1 request
            per period, ``per`` not above 0, ``max_pause`` negative.
        TypeError: A budget that is neither a number, a `RateBackend` nor None; ``estimate``
            not a plain function; ``learn`` not a bool.

    Example:
        >>> quota = ProviderQuotaLayer(requests=500, tokens=200_000)  # per minute
        >>> model = ServiceBuilder().retry(policy).layer(quota).service(step)
    """

    __slots__ = ("_quota",)

    def __init__(
        self,
        requests: float | RateBackend | None = None,
        tokens: float | RateBackend | None = None,
        *,
        per: float = 60.0,
        estimate: Callable[[ChatRequest], float] = estimate_tokens,
        learn: bool = True,
        max_pause: float = 60.0,
        reserve: float = 0.1,
    ) -> None:
        self._quota = Quota(requests, tokens, per, estimate, learn, max_pause, reserve)

    def layer(self, inner: Service[ChatRequestT, RespT]) -> ProviderQuota[ChatRequestT, RespT]:
        """Returns ``inner`` wrapped in a `ProviderQuota` of this layer's quota."""
        return ProviderQuota._sharing(inner, self._quota)

    def statistics(self) -> ProviderQuotaStatistics:
        """Returns the quota's statistics."""
        return self._quota.statistics()

    def __repr__(self) -> str:
        return f"ProviderQuotaLayer({self._quota.describe()})"
