"""Limits: concurrency (shared or per key) and rate (token buckets), with their protocols."""

from .bucket import RateStatistics, TokenBucket
from .concurrency import (
    ConcurrencyLimit,
    ConcurrencyLimiter,
    ConcurrencyLimitLayer,
    ConcurrencyStatistics,
)
from .keyed import KeyedConcurrencyLimit, KeyedConcurrencyLimitLayer, KeyedConcurrencyStatistics
from .protocols import ConcurrencyBackend, RateBackend
from .rate import RateLimit, RateLimitLayer

__all__ = [
    "ConcurrencyBackend",
    "ConcurrencyLimit",
    "ConcurrencyLimitLayer",
    "ConcurrencyLimiter",
    "ConcurrencyStatistics",
    "KeyedConcurrencyLimit",
    "KeyedConcurrencyLimitLayer",
    "KeyedConcurrencyStatistics",
    "RateBackend",
    "RateLimit",
    "RateLimitLayer",
    "RateStatistics",
    "TokenBucket",
]
