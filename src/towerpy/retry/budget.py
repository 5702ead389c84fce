"""RetryBudget: retries may be at most a fixed share of recent requests, plus a small floor."""

from __future__ import annotations

import math
from typing import final

from .._backend import current_time
from .._validate import check_exact_number

__all__ = ["RetryBudget"]

_SLOTS = 10  # the window moves in tenths of ttl, as tower's TpsBudget does


@final
class RetryBudget:
    """Limits retries to ``retry_ratio`` of the requests of the last ``ttl`` seconds, plus a floor.

    Every request (first try) makes a deposit; every retry must withdraw. A retry is allowed
    when, over the last ``ttl`` seconds,

        retries (this one included) <= min_per_second * ttl + retry_ratio * requests

    so a healthy service can always retry ``min_per_second`` times a second, and a failing one
    cannot multiply its load by more than ``1 + retry_ratio``: retries stop before they become a
    retry storm. It is tower's ``TpsBudget``, except that ratios are honoured exactly (0.3 allows
    3 retries per 10 requests, where tower rounds its internal cost and allows 1 per 3).

    The window moves in steps of ``ttl / 10``, counted from the budget's first use: a request
    or retry counts until between 0.9 and 1 times ``ttl`` after it happened. Time is the event
    loop's clock (virtual in tests); use one budget per event loop. Share one budget between
    several `RetryPolicy` objects to give them one common allowance.

    Args:
        ttl: How long a request or retry counts, in seconds.
        min_per_second: Retries per second allowed whatever the traffic.
        retry_ratio: Retries allowed per request (0.2: one retry for every five requests).

    Raises:
        TypeError: An argument is not a number.
        ValueError: ``ttl`` is not a finite number above 0, or ``min_per_second`` or
            ``retry_ratio`` is negative or not finite.
    """

    __slots__ = (
        "_current_deposits",
        "_deposits",
        "_floor",
        "_index",
        "_min_per_second",
        "_origin",
        "_per_deposit",
        "_retry_ratio",
        "_scale",
        "_slot",
        "_slot_end",
        "_slot_start",
        "_ttl",
        "_width",
        "_withdrawals",
    )

    def __init__(
        self, ttl: float = 10.0, min_per_second: float = 10.0, retry_ratio: float = 0.2
    ) -> None:
        # exact: a ratio of 0.3 allows 3 retries per 10 requests, not a binary float's share
        exact_ttl = check_exact_number("ttl", ttl, positive=True)
        rate = check_exact_number("min_per_second", min_per_second)
        ratio = check_exact_number("retry_ratio", retry_ratio)
        reserve = rate * exact_ttl
        self._ttl = float(ttl)
        self._min_per_second = float(min_per_second)
        self._retry_ratio = float(retry_ratio)
        # (withdrawals + 1) <= reserve + ratio * deposits, in integers: multiply through by the
        # denominators of reserve = p/q and ratio = a/b
        self._scale = reserve.denominator * ratio.denominator
        self._floor = reserve.numerator * ratio.denominator
        self._per_deposit = ratio.numerator * reserve.denominator
        self._width = self._ttl / _SLOTS
        self._deposits = [0] * _SLOTS  # per slot of the window; the current slot's is below
        self._withdrawals = [0] * _SLOTS
        self._current_deposits = 0
        self._origin = 0.0
        self._slot = 0
        self._index = 0
        # an empty interval: the first use starts the window at the clock's current time
        self._slot_start = math.inf
        self._slot_end = -math.inf

    def deposit(self) -> None:
        """Records one request (a first try): it earns ``retry_ratio`` retries for ``ttl``."""
        now = current_time()
        if not (self._slot_start <= now < self._slot_end):
            self._advance(now)
        self._current_deposits += 1

    def withdraw(self) -> bool:
        """Takes one retry from the budget, if it allows one now.

        Returns:
            True when the retry may go ahead (it is recorded); False when the budget is spent.
        """
        now = current_time()
        if not (self._slot_start <= now < self._slot_end):
            self._advance(now)
        withdrawals = sum(self._withdrawals)
        deposits = sum(self._deposits) + self._current_deposits
        if (withdrawals + 1) * self._scale <= self._floor + self._per_deposit * deposits:
            self._withdrawals[self._index] += 1
            return True
        return False

    def available(self) -> int:
        """Returns how many retries the budget would allow now, if no request came in."""
        now = current_time()
        if not (self._slot_start <= now < self._slot_end):
            self._advance(now)
        deposits = sum(self._deposits) + self._current_deposits
        allowed = (self._floor + self._per_deposit * deposits) // self._scale
        return max(0, allowed - sum(self._withdrawals))

    def _advance(self, now: float) -> None:
        """Moves the window to the slot that holds ``now``, forgetting what fell out of it."""
        if now < self._slot_start:  # first use, or a new event loop whose clock starts over
            self._origin = now
            self._slot = self._index = 0
            self._deposits[:] = [0] * _SLOTS
            self._withdrawals[:] = [0] * _SLOTS
            self._current_deposits = 0
            self._set_bounds()
            return
        self._deposits[self._index] += self._current_deposits
        self._current_deposits = 0
        slot = int((now - self._origin) // self._width)
        # settle rounding at a boundary: slot_start <= now < slot_end must hold exactly
        while self._origin + (slot + 1) * self._width <= now:
            slot += 1
        while slot > self._slot and self._origin + slot * self._width > now:
            slot -= 1
        for step in range(self._slot + 1, min(slot, self._slot + _SLOTS) + 1):
            self._deposits[step % _SLOTS] = 0
            self._withdrawals[step % _SLOTS] = 0
        if slot - self._slot >= _SLOTS:
            self._deposits[:] = [0] * _SLOTS
            self._withdrawals[:] = [0] * _SLOTS
        self._slot = slot
        self._index = slot % _SLOTS
        self._set_bounds()

    def _set_bounds(self) -> None:
        self._slot_start = self._origin + self._slot * self._width
        self._slot_end = self._origin + (self._slot + 1) * self._width

    @property
    def ttl(self) -> float:
        """How long a request or retry counts, in seconds."""
        return self._ttl

    @property
    def min_per_second(self) -> float:
        """Retries per second allowed whatever the traffic."""
        return self._min_per_second

    @property
    def retry_ratio(self) -> float:
        """Retries allowed per request."""
        return self._retry_ratio

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ttl={self._ttl}, min_per_second={self._min_per_second}, "
            f"retry_ratio={self._retry_ratio})"
        )
