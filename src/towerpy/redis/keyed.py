"""Keyed limits across processes: a budget or an in-flight bound per tenant, per API key.

Each key's state lives in Redis (under its own name, with a TTL), not in a Python object: a
process keeps only a bounded cache of the services it used last, so a million tenants cost
this process nothing more than a thousand.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

from .._service import Middleware, Service
from .._validate import check_plain_function, check_positive_int
from ..limit.concurrency import ConcurrencyLimit
from ..limit.rate import RateLimit

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from ..limit.protocols import ConcurrencyBackend, RateBackend

__all__ = [
    "RedisKeyedConcurrencyLimit",
    "RedisKeyedConcurrencyLimitLayer",
    "RedisKeyedRateLimit",
    "RedisKeyedRateLimitLayer",
]


class RedisTokenBucket(Protocol):
    """What a keyed rate limit uses of its `towerpy.redis.RedisTokenBucket` (which imports it)."""

    @property
    def burst(self) -> float: ...

    def for_key(self, key: Hashable) -> RateBackend: ...


class RedisConcurrencyLimiter(Protocol):
    """What a keyed concurrency limit uses of its `towerpy.redis.RedisConcurrencyLimiter`."""

    def for_key(self, key: Hashable, max_in_flight: int | None = None) -> ConcurrencyBackend: ...


ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
ServiceT = TypeVar("ServiceT")

_CACHED = 1024  # per-key services kept per process: the state itself is in Redis


@final
class _Recent(Generic[ServiceT]):
    """The per-key services used last; the oldest is forgotten past ``_CACHED``."""

    __slots__ = ("_make", "_services")

    def __init__(self, make: Callable[[Hashable], ServiceT]) -> None:
        self._make = make
        self._services: OrderedDict[Hashable, ServiceT] = OrderedDict()

    def get(self, key: Hashable) -> ServiceT:
        services = self._services
        service = services.get(key)
        if service is None:
            service = services[key] = self._make(key)
            if len(services) > _CACHED:
                services.popitem(last=False)
        else:
            services.move_to_end(key)
        return service


@final
class RedisKeyedRateLimit(Middleware[ReqT, RespT]):
    """Rate-limits each key of the requests on a Redis bucket of its own (made by `keyed`).

    - ``ready()`` cannot know the key of the next request, so it reserves nothing here: it only
      waits for the inner service.
    - ``call()`` computes the key and goes through `RateLimit` on that key's bucket: it waits
      for the request's tokens, calls the inner service, settles ``actual_cost``.
    """

    __slots__ = ("_bucket", "_key", "_services")

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        bucket: RedisTokenBucket,
        key: Callable[[ReqT], Hashable],
        cost: Callable[[ReqT], float] | None,
        actual_cost: Callable[[ReqT, RespT], float] | None,
    ) -> None:
        super().__init__(inner)
        self._bucket = bucket
        self._key = key
        self._services: _Recent[RateLimit[ReqT, RespT]] = _Recent(
            lambda k: RateLimit(
                inner, cost=cost, actual_cost=actual_cost, limiter=bucket.for_key(k)
            )
        )

    async def call(self, request: ReqT) -> RespT:
        """Waits for the request's tokens on its key's bucket, then calls the inner service."""
        service = self._services.get(self._key(request))
        return await service.call(request)

    def __repr__(self) -> str:
        return f"RedisKeyedRateLimit({self.inner!r}, bucket={self._bucket!r})"


@final
class RedisKeyedRateLimitLayer:
    """Wraps services in `RedisKeyedRateLimit`; made by `RedisTokenBucket.keyed`."""

    __slots__ = ("_actual_cost", "_bucket", "_cost", "_key")

    def __init__(
        self,
        bucket: RedisTokenBucket,
        key: Callable[[Any], Hashable],
        cost: Callable[[Any], float] | None,
        actual_cost: Callable[[Any, Any], float] | None,
    ) -> None:
        check_plain_function("key", key)
        for name, fn in (("cost", cost), ("actual_cost", actual_cost)):
            if fn is not None:
                check_plain_function(name, fn)
        if cost is None and bucket.burst < 1:
            raise ValueError(
                f"burst is {bucket.burst:g}, below the cost of one request (1 token): no "
                f"request could ever pass; give burst >= 1"
            )
        self._bucket = bucket
        self._key = key
        self._cost = cost
        self._actual_cost = actual_cost

    def layer(self, inner: Service[ReqT, RespT]) -> RedisKeyedRateLimit[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `RedisKeyedRateLimit`."""
        return RedisKeyedRateLimit(inner, self._bucket, self._key, self._cost, self._actual_cost)

    def __repr__(self) -> str:
        return f"RedisKeyedRateLimitLayer(bucket={self._bucket!r})"


@final
class RedisKeyedConcurrencyLimit(Middleware[ReqT, RespT]):
    """Bounds the requests in flight of each key, in every process (made by `keyed`).

    - ``ready()`` cannot know the key of the next request, so it reserves nothing here: it only
      waits for the inner service.
    - ``call()`` computes the key and goes through `ConcurrencyLimit` on that key's count: it
      waits for a permit, calls the inner service, gives the permit back.
    """

    __slots__ = ("_key", "_limiter", "_services")

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        limiter: RedisConcurrencyLimiter,
        key: Callable[[ReqT], Hashable],
        limits: Mapping[Any, int],
    ) -> None:
        super().__init__(inner)
        self._limiter = limiter
        self._services: _Recent[ConcurrencyLimit[ReqT, RespT]] = _Recent(
            lambda k: ConcurrencyLimit(inner, limiter=limiter.for_key(k, limits.get(k)))
        )
        self._key = key

    async def call(self, request: ReqT) -> RespT:
        """Waits for a permit of the request's key, then calls the inner service."""
        service = self._services.get(self._key(request))
        return await service.call(request)

    def __repr__(self) -> str:
        return f"RedisKeyedConcurrencyLimit({self.inner!r}, limiter={self._limiter!r})"


@final
class RedisKeyedConcurrencyLimitLayer:
    """Wraps services in `RedisKeyedConcurrencyLimit`; made by `RedisConcurrencyLimiter.keyed`."""

    __slots__ = ("_key", "_limiter", "_limits")

    def __init__(
        self,
        limiter: RedisConcurrencyLimiter,
        key: Callable[[Any], Hashable],
        limits: Mapping[Any, int],
    ) -> None:
        check_plain_function("key", key)
        if not hasattr(limits, "items"):
            raise TypeError(
                f"limits must be a mapping from key to max_in_flight, got {type(limits).__name__}"
            )
        self._limits = {k: check_positive_int(f"limits[{k!r}]", v) for k, v in limits.items()}
        self._limiter = limiter
        self._key = key

    def layer(self, inner: Service[ReqT, RespT]) -> RedisKeyedConcurrencyLimit[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `RedisKeyedConcurrencyLimit`."""
        return RedisKeyedConcurrencyLimit(inner, self._limiter, self._key, self._limits)

    def __repr__(self) -> str:
        return (
            f"RedisKeyedConcurrencyLimitLayer(limiter={self._limiter!r}, limits={self._limits!r})"
        )
