"""One budget of a provider quota (its requests, or its tokens): a bucket that learns.

A budget is in one of three states:

- unknown: learning, and no limit is known yet (none was configured, no response told);
- set: a `RateBackend` enforces it: one the layer made (from a number, or from what the
  provider reported: it is *owned*, and is replaced when the provider reports another
  limit) or one the user gave (a shared `TokenBucket`, a `RedisTokenBucket`: kept as it is);
- open: no limit: none was configured and the provider reports none.

What the provider reports moves a budget along (`learn`): a limit makes an owned budget a
`TokenBucket` of that limit per period (holding at most what the provider says remains);
the remaining level lowers an in-process bucket that holds more than that. A bucket in another
process's memory (Redis) is not lowered: its level here is as of this process's last
operation, and every process of the fleet would lower it again, so the lowering would add up.

A pause (`drain`) empties the bucket until the pause ends: it charges the bucket what it holds
plus what it refills during the pause, so that every caller of it, in this process or another,
waits the pause out in its queue, in order. A shared backend is read afresh first (an
acquisition of 0 tokens), so that a process whose look shows the pause already charged by
another charges only what its own pause adds.
"""

from __future__ import annotations

import contextlib
from typing import Final, final

import anyio

from .._validate import check_positive_number
from ..limit.bucket import TokenBucket
from ..limit.protocols import RateBackend

__all__ = ["OPEN", "SET", "UNKNOWN", "Budget", "Taken"]

UNKNOWN: Final = "unknown"
SET: Final = "set"
OPEN: Final = "open"


@final
class Taken:
    """Tokens one call took from a budget: where from, how many, and their receipt."""

    __slots__ = ("backend", "cost", "receipt")

    def __init__(self, backend: RateBackend, cost: float) -> None:
        self.backend = backend
        self.cost = cost
        # a TokenBucket's receipt makes a refund give back exactly what of these still counts
        self.receipt: float | None = backend.taken if type(backend) is TokenBucket else None


@final
class Budget:
    """The requests or the tokens of one quota. See the module docstring.

    Args:
        kind: ``"requests"`` or ``"tokens"``, for messages.
        value: A number per ``per`` seconds, a `RateBackend`, or None.
        per: The period of every limit, configured or reported, in seconds.
        learn: Whether what the provider reports moves the budget.
        smallest: The smallest burst that admits anything (1 for requests).

    Raises:
        TypeError: ``value`` is neither a number, a `RateBackend` nor None.
        ValueError: A number that is not finite and above 0, or a bucket holding less than
            ``smallest``.
    """

    __slots__ = (
        "backend",
        "fresh",
        "kind",
        "learned",
        "owned",
        "per",
        "reserve",
        "state",
        "waiting",
    )

    def __init__(
        self,
        kind: str,
        value: float | RateBackend | None,
        per: float,
        learn: bool,
        reserve: float,
        smallest: float = 0.0,
    ) -> None:
        self.kind = kind
        self.per = per
        self.reserve = reserve if learn else 0.0
        self.fresh = False  # a bucket made from a number: its reserve is taken at the first use
        self.learned: int | None = None  # the last limit the provider reported
        self.waiting: anyio.CancelScope | None = None  # the gate's head, waiting in the bucket
        self.backend: RateBackend | None
        if value is None:
            self.backend, self.owned = None, True
            self.state = UNKNOWN if learn else OPEN
            return
        if isinstance(value, RateBackend):
            self.backend, self.owned, self.state = value, False, SET
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"{kind} must be a number (per `per` seconds), a TokenBucket or another "
                f"RateBackend (a RedisTokenBucket), or None to learn it; got "
                f"{type(value).__name__} {value!r}"
            )
        else:
            rate = check_positive_number(kind, value)
            self.backend, self.owned, self.state = TokenBucket(rate, per), True, SET
            self.fresh = self.reserve > 0
        if self.backend.burst < smallest:
            raise ValueError(
                f"{kind}: the budget holds at most {self.backend.burst:g}, less than one "
                f"request; give at least 1 request per period (per={per:g})"
            )

    @property
    def limit(self) -> float | None:
        """The limit enforced now, per period, when the layer knows it."""
        backend = self.backend
        if backend is None:
            return None
        stats = backend.statistics()
        return stats.rate * self.per / stats.per

    async def take(self, cost: float) -> Taken | None:
        """Waits for ``cost`` in the bucket (a new one, if the budget is re-rated meanwhile).

        Returns:
            What was taken, or None when the budget has no bucket.

        Raises:
            RequestTooLarge: ``cost`` is above the bucket's burst.
        """
        while True:
            backend = self.backend
            if backend is None:
                return None
            if backend.acquire_nowait(cost):
                return Taken(backend, cost)
            with anyio.CancelScope() as scope:
                self.waiting = scope
                try:
                    await backend.acquire(cost)
                finally:
                    self.waiting = None
                return Taken(backend, cost)
            # the budget was re-rated while this waited in the old bucket: wait in the new one

    def refund(self, taken: Taken, amount: float) -> None:
        """Gives back ``amount`` of what a call took (to the bucket in use now)."""
        backend = self.backend
        if backend is None or amount <= 0:
            return
        if type(backend) is TokenBucket and backend is taken.backend:
            backend.refund(amount, taken.receipt)
        else:
            backend.refund(amount)

    def charge(self, amount: float) -> None:
        """Takes ``amount`` more from the bucket in use now, into debt if need be."""
        backend = self.backend
        if backend is not None and amount > 0:
            backend.charge(amount)

    def start(self) -> None:
        """Takes the reserve out of a bucket made from a number, at its first use."""
        self.fresh = False
        backend = self.backend
        if backend is not None:
            backend.charge(self.reserve * backend.burst)

    def learn(self, limit: int | None, remaining: int | None) -> None:
        """Follows what the provider reported: its limit, and what remains of it."""
        if limit is not None and limit >= 1:
            self.learned = limit
            if self.owned:
                backend = self.backend
                if not isinstance(backend, TokenBucket) or backend.rate != limit:
                    self._rerate(limit, remaining)
                    return
        backend = self.backend
        if remaining is not None and type(backend) is TokenBucket:
            # what remains, less the reserve: room for what the estimates miss
            allowed = remaining - self.reserve * (self.learned or backend.burst)
            level = backend.statistics().tokens
            if level > allowed:
                backend.charge(level - allowed)

    def _rerate(self, limit: int, remaining: int | None) -> None:
        self.fresh = False
        old = self.backend
        level = float(limit) if old is None else old.statistics().tokens
        level = min(level, float(limit) if remaining is None else float(remaining))
        level = min(level, (1.0 - self.reserve) * limit)
        bucket = TokenBucket(limit, self.per)
        if level < limit:
            bucket.charge(limit - level)
        self.backend = bucket
        self.state = SET
        if self.waiting is not None:
            self.waiting.cancel()  # the head waits in the old bucket: it moves to this one

    async def drain(self, seconds: float) -> None:
        """Empties the bucket until ``seconds`` from now, for every caller of it."""
        backend = self.backend
        if backend is None:
            return
        if type(backend) is not TokenBucket:
            # its statistics are then as of now; unreachable, the last level known does (and
            # the 429 propagates, not this)
            with contextlib.suppress(Exception):
                await backend.try_acquire(0.0)
        stats = backend.statistics()
        amount = stats.tokens + seconds * stats.rate / stats.per
        if amount > 0:
            backend.charge(amount)

    def describe(self) -> str:
        """A short text for ``repr``."""
        backend = self.backend
        if backend is None:
            return "learning" if self.state == UNKNOWN else "None"
        return repr(backend) if not self.owned else f"{self.limit:g}"
