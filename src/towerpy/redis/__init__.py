"""Limits shared by every process on every machine, kept in Redis (the ``redis`` extra).

`RedisTokenBucket` and `RedisConcurrencyLimiter` implement the protocols the limit layers use
(`towerpy.limit.RateBackend`, `towerpy.limit.ConcurrencyBackend`), so they go where a
`TokenBucket` or a `ConcurrencyLimiter` goes. Nothing here imports a Redis client library until
a limiter is given a client: ``redis.asyncio`` (``pip install 'towerpy[redis]'``) on asyncio, or
coredis >= 6 (``pip install 'towerpy[coredis]'``) on asyncio and trio.
"""

from .bucket import RedisRateStatistics, RedisTokenBucket
from .concurrency import RedisConcurrencyLimiter, RedisConcurrencyStatistics
from .keyed import (
    RedisKeyedConcurrencyLimit,
    RedisKeyedConcurrencyLimitLayer,
    RedisKeyedRateLimit,
    RedisKeyedRateLimitLayer,
)

__all__ = [
    "RedisConcurrencyLimiter",
    "RedisConcurrencyStatistics",
    "RedisKeyedConcurrencyLimit",
    "RedisKeyedConcurrencyLimitLayer",
    "RedisKeyedRateLimit",
    "RedisKeyedRateLimitLayer",
    "RedisRateStatistics",
    "RedisTokenBucket",
]
