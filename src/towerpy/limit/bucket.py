"""TokenBucket: a token budget that refills continuously, with first-come first-served waiters.

Its waiters wait in an ordered dictionary, or, once a `RateLimitLayer` with ``priority=`` is
given the bucket, in a `towerpy._priority.PriorityLine` (the same face, ordered by priority).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any, final

from .. import _observe
from .._backend import (
    Alarm,
    Waiter,
    _running,
    current_time,
    new_alarm,
    new_waiter,
    running_clock,
    time_on,
)
from .._priority import PriorityLine, ranked_line
from .._validate import check_cost, check_positive_number
from ..errors import RequestTooLarge
from .protocols import RateStatistics

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RateStatistics", "TokenBucket"]

_NO_CLOCK = object()  # the clock of a bucket not used yet: no running loop is it


_MAX_MARKS = 64  # restart points kept for refunds; beyond that the oldest two are merged


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
    its tokens are there: a costly request is never starved by cheaper ones behind it (once a
    `RateLimitLayer` with ``priority=`` is given it, by priority instead: see `acquire`). Waiting
    costs no CPU: only the first waiter sleeps, until the exact time its tokens will be there,
    and is woken earlier when a refund brings that time forward.

    Pass one bucket to several `RateLimitLayer` (``limiter=``) to make them share one budget:
    e.g. a provider's requests-per-minute limit across every agent of a process. A bucket may
    outlive its event loop: used under another loop (each ``anyio.run`` or ``Agent.run_sync``
    makes one, with a clock of its own), it holds what it held at the end of the last one.

    The state is a single time (the "theoretical arrival time" of the generic cell rate
    algorithm): the instant at which the bucket will be full again. Taking tokens moves it
    forward, refunds move it back, a debt moves it past ``now + burst / rate * per``.
    Refunds are capped so that the window bound holds for the tokens actually spent (see
    `refund`): the bucket keeps the few instants since it was last full that a refund of
    older tokens cannot move it back past.

    Args:
        rate: Tokens added per ``per`` seconds (> 0).
        per: The period of ``rate`` in seconds (> 0): ``TokenBucket(500, per=60)`` is 500 a
            minute.
        burst: The most tokens the bucket holds, and so the largest cost one request may have;
            defaults to ``rate``.

    Raises:
        ValueError: ``rate``, ``per`` or ``burst`` is not a finite number above 0.
    """

    __slots__ = (
        "_burst",
        "_clock",
        "_full_at",
        "_interval",
        "_line",
        "_mark_offset",
        "_mark_taken",
        "_per",
        "_rate",
        "_read",
        "_taken",
        "_tat",
        "_tau",
        "_waiters",
    )

    def __init__(self, rate: float, per: float = 1.0, burst: float | None = None) -> None:
        self._rate = check_positive_number("rate", rate)
        self._per = check_positive_number("per", per)
        self._burst = self._rate if burst is None else check_positive_number("burst", burst)
        self._interval = self._per / self._rate  # seconds to refill one token
        self._tau = self._burst * self._interval  # seconds to refill from empty to full
        self._tat = -math.inf  # when the bucket is full again; long ago: it starts full
        self._waiters: OrderedDict[_Waiter, float] | PriorityLine[_Waiter] = OrderedDict()
        self._line: PriorityLine[_Waiter] | None = None  # the waiters, once by priority
        # For refunds (see refund): the tokens taken in all; that total when tokens were last
        # taken from a full bucket; and restart points, one per recent admission into a bucket
        # that was not full: the total just before it, and its offset (that total in seconds
        # minus the time then). The points are kept with their offsets increasing.
        self._taken = 0.0
        self._full_at = -math.inf
        self._mark_taken: list[float] = []
        self._mark_offset: list[float] = []
        # The clock the times above are on: the loop (asyncio) or the clock (trio) of the last
        # use, and how to read it; a new loop's clock may start anywhere.
        self._clock: Any = _NO_CLOCK
        self._read: Callable[[], float] | None = None

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

    @property
    def taken(self) -> float:
        """Tokens taken since the bucket was made, charges included; refunds do not lower it.

        Read right after taking tokens, it is their receipt: ``refund(cost, taken=receipt)``
        gives back exactly what of those tokens still counts.
        """
        return self._taken

    def acquire_nowait(self, cost: float) -> bool:
        """Takes ``cost`` tokens if they are there and nobody waits; tells whether it did."""
        if self._waiters or cost > self._burst:
            return False
        # time_on(self._clock), inlined for asyncio (every request's path): the running loop's
        # time if the state is on that loop's clock, else the re-basing path
        if _running._sniffio_local is not None and _running._sniffio_local.name == "trio":
            now = time_on(self._clock)
        else:
            loop, read = _running._last
            now = read() if loop is self._clock and loop._thread_id == _get_ident() else None
        if now is None:
            now = self._now()
        tat = self._tat
        cost_time = cost * self._interval
        if tat + cost_time - self._tau > now:
            return False
        # _take(), inlined: this is every request's path
        taken = self._taken
        self._taken = taken + cost
        if tat > now:
            self._tat = tat + cost_time
            self._mark(taken, now)
        else:
            self._tat = now + cost_time
            self._full_at = taken
        return True

    async def try_acquire(self, cost: float) -> bool:
        """Takes ``cost`` tokens if that needs no waiting; tells whether it did.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`.
        """
        self._check_fits(cost)
        return self.acquire_nowait(cost)

    def _by_priority(self, aging: float | None) -> None:
        """Admits the waiters by priority from now on; those waiting stay first.

        `towerpy._priority.prioritize` has checked ``aging`` against a line it may have already.
        """
        if self._line is None:
            self._waiters = self._line = ranked_line(self._waiters, aging)

    async def acquire(self, cost: float, priority: float = 0) -> None:
        """Waits, in arrival order, until ``cost`` tokens are there, and takes them.

        A task cancelled while waiting takes nothing and lets the next waiter move up.

        Args:
            cost: The tokens to take.
            priority: The waiter's priority (higher goes first), once the bucket admits by
                priority; until then, all wait in arrival order.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`: it could never be admitted.
        """
        self._check_fits(cost)
        if self.acquire_nowait(cost):
            return
        waiter = _Waiter(cost)
        line = self._line
        self._waiters[waiter] = 0.0 if line is None else line.rank(priority)
        try:
            waiting = self._wait(waiter)
            await (waiting if _observe.wait is None else _observe.wait("rate_limit", waiting))
        except BaseException:
            self._leave(waiter)
            raise

    async def _wait(self, waiter: _Waiter) -> None:
        cost_time = waiter.cost * self._interval
        slept_until = -math.inf
        while True:
            if self._head() is not waiter:
                event = waiter.event = new_waiter()
                await event.wait()  # woken when this waiter reaches the head of the queue
                continue
            now = self._now()
            due = self._tat + cost_time - self._tau
            # Back from sleeping until `due` with the state unchanged, a waiter is admitted even
            # if the clock reads a rounding error short of it: it must never re-sleep for 1e-17 s.
            if due <= now or due <= slept_until:
                self._take(waiter.cost, now)
                self._waiters.popitem(last=False)  # this waiter: the head
                self._wake_head()
                return
            # A refund cuts the sleep short, since the tokens may then be there sooner.
            alarm = waiter.alarm = new_alarm()
            try:
                slept_until = due if await alarm.sleep_until(due) else -math.inf
            finally:
                waiter.alarm = None

    def _take(self, cost: float, now: float) -> None:
        """Takes ``cost`` tokens at ``now``, whether they are there or not."""
        tat = self._tat
        taken = self._taken
        self._taken = taken + cost
        if tat > now:
            self._tat = tat + cost * self._interval
            self._mark(taken, now)
        else:
            # taken from a full bucket: tokens taken before now count no more (refund)
            self._tat = now + cost * self._interval
            self._full_at = taken

    def _mark(self, taken: float, now: float) -> None:
        """Records the restart point just before tokens taken from a bucket that is not full."""
        takens = self._mark_taken
        offsets = self._mark_offset
        offset = taken * self._interval - now
        if takens and takens[-1] <= self._full_at:
            takens.clear()  # every point is from before the bucket was last full: void
            offsets.clear()
        # a point that a later one matches or beats (a smaller offset) is of no more use: any
        # refund it would cap, the later one caps at least as much
        while offsets and offsets[-1] >= offset:
            takens.pop()
            offsets.pop()
        takens.append(taken)
        offsets.append(offset)
        if len(takens) > _MAX_MARKS:
            # merge the two oldest, keeping the stricter cap for both: refunds of the oldest
            # tokens may come out smaller than they could be, never larger
            del takens[0]
            del offsets[1]

    def _head(self) -> _Waiter:
        line = self._line
        return next(iter(self._waiters)) if line is None else line.first()

    def _leave(self, waiter: _Waiter) -> None:
        waiters = self._waiters
        if waiters and self._head() is waiter:
            waiters.popitem(last=False)
            self._wake_head()  # the next one may be admissible now, or must time its sleep
        else:
            waiters.pop(waiter, None)

    def _wake_head(self) -> None:
        if self._waiters:
            head = self._head()
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

    def refund(self, cost: float, taken: float | None = None) -> None:
        """Gives back ``cost`` tokens, as far as they still count.

        A refund undoes a part of what was taken, as if those tokens had never left the
        bucket: they would not have made it hold more than ``burst`` in the meantime, so what
        the bucket has refilled since they were taken is not given back twice. Tokens taken
        before the bucket was last full no longer count at all. That keeps the window bound
        for the tokens actually spent, however late the refund comes.

        Args:
            cost: The tokens to give back.
            taken: The receipt of those tokens: `taken` read right after they were taken. Without
                it they are taken to be the last tokens taken.
        """
        check_cost("cost", cost)
        if self._tat == -math.inf:
            return  # full since it was made: nothing to give back
        self._now()  # moves the state onto this loop's clock if it changed
        if taken is None:
            taken = self._taken
        if taken <= self._full_at:
            return  # taken before the bucket was last full: spent for good
        takens = self._mark_taken
        offsets = self._mark_offset
        if takens and takens[0] <= self._full_at:  # points from before the bucket was last full
            void = bisect_right(takens, self._full_at)
            del takens[:void]
            del offsets[:void]
        # With those tokens gone from the history, the bucket is full again at the latest of:
        # their refill time taken off, and each restart point after them (the instant just
        # before a later admission, plus every token taken since). The first point after them
        # is that latest: the points are kept in that order.
        cost_time = cost * self._interval
        tat = self._tat
        new_tat = tat - cost_time
        first = bisect_left(takens, taken)
        if first < len(takens):
            new_tat = max(new_tat, self._taken * self._interval - offsets[first])
        # the restart points before those tokens no longer count them
        for i in range(first):
            offsets[i] += cost_time
        while 0 < first < len(offsets) and offsets[first - 1] >= offsets[first]:
            del takens[first - 1]
            del offsets[first - 1]
            first -= 1
        if new_tat < tat:
            self._tat = new_tat
            self._wake_head()  # the first waiter's tokens may be there sooner

    def charge(self, cost: float) -> None:
        """Takes ``cost`` more tokens at once, going into debt if there are not enough."""
        check_cost("cost", cost)
        self._take(cost, self._now())
        # no wake-up: the first waiter's time only moves later, it re-checks when it wakes

    def statistics(self) -> RateStatistics:
        """Returns the rate, the tokens available now and the number of waiting requests."""
        tokens = self._burst
        if self._tat > -math.inf:
            now = self._now()
            tokens -= max(0.0, self._tat - now) / self._interval
        # `+ 0.0` turns a rounded -0.0 into 0.0
        tokens = round(tokens, 9) + 0.0
        return RateStatistics(self._rate, self._per, self._burst, tokens, len(self._waiters))

    def _now(self) -> float:
        """Reads the running loop's clock, moving the state onto it first if it is another."""
        running = running_clock()
        if running is None:  # no loop runs (statistics from plain code): the last use's clock
            return current_time() if self._read is None else self._read()
        clock, read = running
        if clock is not self._clock:
            self._move_to(clock, read)
        return read()

    def _move_to(self, clock: object, read: Callable[[], float]) -> None:
        """Puts the state on another clock: a new event loop's, or a new trio run's.

        Each loop has a clock of its own, which may start anywhere (a virtual clock at 0,
        trio's at a random offset): the state's times move by the difference between the two
        clocks now, so that the bucket holds what it held on the old clock (a virtual clock
        stands still once its loop is gone; a real one counts the time in between).
        """
        previous = self._read
        self._clock = clock
        self._read = read
        if previous is None:
            return  # first use: the state holds no time yet
        shift = read() - previous()
        if shift:
            self._tat += shift
            offsets = self._mark_offset
            for i in range(len(offsets)):
                offsets[i] -= shift

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate:g}, per={self._per:g}, burst={self._burst:g})"
