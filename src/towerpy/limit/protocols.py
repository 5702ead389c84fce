"""The protocols a limiter implements, so that limits can live elsewhere than in this process.

`ConcurrencyLimitLayer` and `RateLimitLayer` talk to their limiter only through these methods.
`ConcurrencyLimiter` and `TokenBucket` implement them in memory; a backend that shares a limit
between processes (Redis, say) can implement them too. Nothing in them needs shared Python
objects or callbacks across processes:

- waiting is the backend's own business (``acquire`` returns when the capacity is taken);
- a permit is an opaque value the backend hands out and gets back, so a remote backend can use a
  lease id;
- giving capacity back (``release``, ``refund``, ``charge``) is a plain synchronous method,
  because it runs in ``finally`` blocks and from the path that drops a reservation whose task
  has ended (a finalizer, queued on the event loop). A remote backend queues that work and sends
  it from a task of its own; it must never block.
- ``acquire_nowait`` is the in-memory fast path, tried before ``acquire`` on every request; a
  backend that needs I/O to decide returns None (or False) from it and does the work in
  ``acquire``.
- a backend that cannot reach its store raises `LimiterUnavailable` from ``acquire`` and
  ``try_acquire`` (or admits, if so configured); background work of its own (sending what
  was queued, renewing leases) runs inside ``async with backend:``. `towerpy.redis` does both;
  the layers need to know about neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["ConcurrencyBackend", "ConcurrencyStatistics", "RateBackend", "RateStatistics"]


@dataclass(frozen=True, slots=True)
class ConcurrencyStatistics:
    """What a concurrency limit is doing at one instant.

    Attributes:
        max_in_flight: The limit.
        in_flight: Permits out: calls running plus reservations made by ``ready()``.
        waiting: Tasks waiting for a permit.
    """

    max_in_flight: int
    in_flight: int
    waiting: int

    @property
    def available(self) -> int:
        """Permits free now."""
        return self.max_in_flight - self.in_flight


@dataclass(frozen=True, slots=True)
class RateStatistics:
    """What a token bucket is doing at one instant.

    Attributes:
        rate: Tokens added per ``per`` seconds.
        per: The period of ``rate``, in seconds.
        burst: The most tokens the bucket holds.
        tokens: Tokens available now, rounded to 9 decimal places (the clock's rounding
            errors would show otherwise); negative while the bucket is in debt (after an
            ``actual_cost`` above the estimate).
        waiting: Requests waiting for tokens.
    """

    rate: float
    per: float
    burst: float
    tokens: float
    waiting: int


@runtime_checkable
class ConcurrencyBackend(Protocol):
    """A count of permits shared by the services it is passed to (see `ConcurrencyLimiter`).

    Waiters are served first-come first-served; a permit given back while tasks wait goes to
    the first of them.
    """

    def acquire_nowait(self) -> object | None:
        """Takes a permit if one is free and nobody waits, without waiting or doing I/O.

        Returns:
            The permit, or None (then call `acquire`).
        """
        ...

    async def acquire(self) -> object:
        """Waits for a permit, in arrival order, and takes it.

        Returns:
            The permit, to be passed to `release`. A task cancelled while waiting holds none.
        """
        ...

    async def try_acquire(self) -> object | None:
        """Takes a permit if one is free without waiting for another to be given back.

        Returns:
            The permit, or None when every permit is taken or others wait.
        """
        ...

    def release(self, permit: object) -> None:
        """Gives a permit back. Synchronous, never blocks: it runs in ``finally`` blocks."""
        ...

    def statistics(self) -> ConcurrencyStatistics:
        """Returns what the limiter is doing now."""
        ...


@runtime_checkable
class RateBackend(Protocol):
    """A token budget shared by the services it is passed to (see `TokenBucket`).

    Waiters are admitted first-come first-served: a costly request is never overtaken by cheaper
    ones that arrived after it.
    """

    @property
    def burst(self) -> float:
        """The most tokens the bucket holds: the largest cost a request may have."""
        ...

    def acquire_nowait(self, cost: float) -> bool:
        """Takes ``cost`` tokens if they are there and nobody waits, without waiting or I/O.

        Returns:
            True when the tokens are taken; False otherwise (then call `acquire`).
        """
        ...

    async def acquire(self, cost: float) -> None:
        """Waits, in arrival order, until ``cost`` tokens are there, and takes them.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`: it could never be admitted.
        """
        ...

    async def try_acquire(self, cost: float) -> bool:
        """Takes ``cost`` tokens if that needs no waiting.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`.
        """
        ...

    def refund(self, cost: float) -> None:
        """Gives ``cost`` tokens back (never above `burst`). Synchronous, never blocks."""
        ...

    def charge(self, cost: float) -> None:
        """Takes ``cost`` more tokens at once, going into debt if need be. Never blocks."""
        ...

    def statistics(self) -> RateStatistics:
        """Returns what the bucket is doing now."""
        ...
