"""TokenBucket: a token budget that refills continuously, with first-come first-served waiters."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import final

from .._runtime import current_time
from .._validate import check_cost, check_positive_number
from .._waiter import Alarm, Waiter, new_alarm, new_waiter
from ..errors import RequestTooLarge

__all__ = ["RateStatistics", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class RateStatistics:
    """What a token bucket is doing at one instant.

    Attributes:
        rate: Tokens added per ``per`` seconds.
        per: The period of ``rate``, in seconds.
        burst: The most tokens the bucket holds.
        tokens: Tokens available now; negative while the bucket is in debt (after an
            ``actual_cost`` above the estimate).
        waiting: Requests waiting for tokens.
    """

    rate: float
    per: float
    burst: float
    tokens: float
    waiting: int


@final
class _Waiter:
    __slots__ = ("alarm", "cost", "event")

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.event: Waiter | None = None  # woken when the waiter reaches the head
        self.alarm: Alarm | None = None  # the head's sleep until its tokens are due


@final
class TokenBucket:
    """A token bucket: refills at ``rate`` tokens per ``per`` seconds, holds at most ``burst``.

    It starts full. In any window of ``t`` seconds, the tokens taken are at most
    ``burst + rate * t / per``. Waiters are admitted first-come first-served, each the moment
    its tokens are there: a costly request is never starved by cheaper ones behind it. Waiting
    costs no CPU: only the first waiter sleeps, until the exact time its tokens will be there,
    and is woken earlier when a refund brings that time forward.

    Pass one bucket to several `RateLimitLayer` (``limiter=``) to make them share one budget:
    e.g. a provider's requests-per-minute limit across every agent of a process.

    The state is a single time (the "theoretical arrival time" of the generic cell rate
    algorithm): the instant at which the bucket will be full again. Taking tokens moves it
    forward, refunds move it back, a debt moves it past ``now + burst / rate * per``.

    Args:
        rate: Tokens added per ``per`` seconds (> 0).
        per: The period of ``rate`` in seconds (> 0): ``TokenBucket(500, per=60)`` is 500 a
            minute.
        burst: The most tokens the bucket holds, and so the largest cost one request may have;
            defaults to ``rate``.

    Raises:
        ValueError: ``rate``, ``per`` or ``burst`` is not a finite number above 0.
    """

    __slots__ = ("_burst", "_interval", "_per", "_rate", "_tat", "_tau", "_waiters")

    def __init__(self, rate: float, per: float = 1.0, burst: float | None = None) -> None:
        self._rate = check_positive_number("rate", rate)
        self._per = check_positive_number("per", per)
        self._burst = self._rate if burst is None else check_positive_number("burst", burst)
        self._interval = self._per / self._rate  # seconds to refill one token
        self._tau = self._burst * self._interval  # seconds to refill from empty to full
        self._tat = -math.inf  # when the bucket is full again; long ago: it starts full
        self._waiters: deque[_Waiter] = deque()

    @property
    def rate(self) -> float:
        """Tokens added per ``per`` seconds."""
        return self._rate

    @property
    def per(self) -> float:
        """The period of `rate`, in seconds."""
        return self._per

    @property
    def burst(self) -> float:
        """The most tokens the bucket holds."""
        return self._burst

    def acquire_nowait(self, cost: float) -> bool:
        """Takes ``cost`` tokens if they are there and nobody waits; tells whether it did."""
        if self._waiters or cost > self._burst:
            return False
        now = current_time()
        tat = self._tat
        cost_time = cost * self._interval
        if tat + cost_time - self._tau <= now:
            self._tat = (tat if tat > now else now) + cost_time
            return True
        return False

    async def try_acquire(self, cost: float) -> bool:
        """Takes ``cost`` tokens if that needs no waiting; tells whether it did.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`.
        """
        self._check_fits(cost)
        return self.acquire_nowait(cost)

    async def acquire(self, cost: float) -> None:
        """Waits, in arrival order, until ``cost`` tokens are there, and takes them.

        A task cancelled while waiting takes nothing and lets the next waiter move up.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`: it could never be admitted.
        """
        self._check_fits(cost)
        if self.acquire_nowait(cost):
            return
        waiter = _Waiter(cost)
        self._waiters.append(waiter)
        try:
            await self._wait(waiter)
        except BaseException:
            self._leave(waiter)
            raise

    async def _wait(self, waiter: _Waiter) -> None:
        waiters = self._waiters
        cost_time = waiter.cost * self._interval
        slept_until = -math.inf
        while True:
            if waiters[0] is not waiter:
                event = waiter.event = new_waiter()
                await event.wait()  # woken when this waiter reaches the head of the queue
                continue
            now = current_time()
            due = self._tat + cost_time - self._tau
            # Back from sleeping until `due` with the state unchanged, a waiter is admitted even
            # if the clock reads a rounding error short of it: it must never re-sleep for 1e-17 s.
            if due <= now or due <= slept_until:
                tat = self._tat
                self._tat = (tat if tat > now else now) + cost_time
                waiters.popleft()
                self._wake_head()
                return
            # A refund cuts the sleep short, since the tokens may then be there sooner.
            alarm = waiter.alarm = new_alarm()
            try:
                slept_until = due if await alarm.sleep_until(due) else -math.inf
            finally:
                waiter.alarm = None

    def _leave(self, waiter: _Waiter) -> None:
        waiters = self._waiters
        if waiters[0] is waiter:
            waiters.popleft()
            self._wake_head()  # the next one may be admissible now, or must time its sleep
        else:
            waiters.remove(waiter)

    def _wake_head(self) -> None:
        if self._waiters:
            head = self._waiters[0]
            if head.alarm is not None:
                head.alarm.wake()  # asleep until its tokens are due: have it look again
            elif head.event is not None:
                head.event.wake()  # it just became the head: have it look

    def _check_fits(self, cost: float) -> None:
        check_cost("cost", cost)
        if cost > self._burst:
            raise RequestTooLarge(
                f"a request costing {cost:g} tokens can never pass a bucket that holds at most "
                f"{self._burst:g} (burst); raise burst or split the request"
            )

    def refund(self, cost: float) -> None:
        """Gives ``cost`` tokens back (the bucket never holds more than `burst`)."""
        check_cost("cost", cost)
        # Moving the full-again time back by `cost` tokens is exact, even when it goes before
        # now: the bucket then reads as full, which is the cap at burst.
        self._tat -= cost * self._interval
        self._wake_head()  # the first waiter's tokens may be there sooner

    def charge(self, cost: float) -> None:
        """Takes ``cost`` more tokens at once, going into debt if there are not enough."""
        check_cost("cost", cost)
        now = current_time()
        tat = self._tat
        self._tat = (tat if tat > now else now) + cost * self._interval
        # no wake-up: the first waiter's time only moves later, it re-checks when it wakes

    def statistics(self) -> RateStatistics:
        """Returns the rate, the tokens available now and the number of waiting requests."""
        tokens = self._burst
        if self._tat > -math.inf:
            tokens -= max(0.0, self._tat - current_time()) / self._interval
        return RateStatistics(self._rate, self._per, self._burst, tokens, len(self._waiters))

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate:g}, per={self._per:g}, burst={self._burst:g})"
