"""The state one provider quota's services share: two budgets, the gate, the pause, the probe.

`ProviderQuota` (in ``quota.py``) is the service; this is its machinery. One caller at a time
(the gate's head) waits in the budgets, the others wait in line at the gate, first-come
first-served: a pause or a probe holds the head, and so everyone, in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import anyio

from .. import _observe
from .._backend import current_time, running_clock
from .._ratelimits import RateLimitInfo
from .._service import callable_name
from .._validate import check_plain_function, check_positive_number, check_seconds
from .._waiter import Permits
from ..errors import ProviderError, RateLimited
from ._budget import OPEN, UNKNOWN, Budget, Taken

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..limit.protocols import RateBackend
    from .messages import ChatRequest

__all__ = ["ProviderQuotaStatistics", "Quota"]

_FIRST_BACKOFF = 1.0  # seconds of pause after a 429 that says nothing of when to come back
_REQUEST = 1.0  # what one call costs the request budget


@dataclass(frozen=True, slots=True)
class ProviderQuotaStatistics:
    """What a provider quota has learned and done, at one instant.

    Attributes:
        requests_limit: The request budget enforced now, per period; None: none (not yet
            learned, or no limit).
        tokens_limit: The token budget enforced now, per period; None: none.
        requests_available: Requests in the budget now (negative in debt); None: no bucket.
        tokens_available: Tokens in the budget now; None: no bucket.
        learned_requests: The last request limit the provider reported.
        learned_tokens: The last token limit the provider reported.
        calls: Calls admitted.
        rate_limited: 429 answers seen.
        paused: Seconds of pause begun in all (overlapping pauses count once).
        pause_left: Seconds until the current pause ends; 0 when not paused.
        tokens_estimated: The estimates of the calls whose usage was reported.
        tokens_reported: The usage those calls reported.
        waiting: Callers waiting to be admitted.
    """

    requests_limit: float | None
    tokens_limit: float | None
    requests_available: float | None
    tokens_available: float | None
    learned_requests: int | None
    learned_tokens: int | None
    calls: int
    rate_limited: int
    paused: float
    pause_left: float
    tokens_estimated: float
    tokens_reported: int
    waiting: int


@final
class _Admission:
    """What one admitted call took, for settling it afterwards."""

    __slots__ = ("cost", "probe", "requests", "tokens")

    def __init__(self, cost: float, requests: Taken | None, tokens: Taken | None) -> None:
        self.cost = cost
        self.requests = requests
        self.tokens = tokens
        self.probe = False  # the call that learns the unknown limits, alone in flight


def _clock() -> object:
    """The running loop's clock (a pause's time means nothing on another loop's clock)."""
    running = running_clock()
    return None if running is None else running[0]


@final
class Quota:
    """The state one layer's services share (see the module docstring)."""

    __slots__ = (
        "_backoffs",
        "_calls",
        "_clock",
        "_estimate",
        "_estimated",
        "_fresh",
        "_gate",
        "_learn",
        "_max_pause",
        "_paused",
        "_paused_until",
        "_probe",
        "_rate_limited",
        "_reported",
        "requests",
        "tokens",
    )

    def __init__(
        self,
        requests: float | RateBackend | None,
        tokens: float | RateBackend | None,
        per: float,
        estimate: Callable[[ChatRequest], float],
        learn: bool,
        max_pause: float,
        reserve: float,
    ) -> None:
        per = check_positive_number("per", per)
        check_plain_function("estimate", estimate)
        if not isinstance(learn, bool):
            raise TypeError(f"learn must be True or False, got {learn!r}")
        self._max_pause = check_seconds("max_pause", max_pause)
        if isinstance(reserve, bool) or not isinstance(reserve, (int, float)):
            raise TypeError(f"reserve must be a fraction in [0, 1), got {reserve!r}")
        if not 0.0 <= reserve < 1.0:
            raise ValueError(f"reserve must be a fraction in [0, 1), got {reserve!r}")
        self.requests = Budget("requests", requests, per, learn, reserve, smallest=_REQUEST)
        self.tokens = Budget("tokens", tokens, per, learn, reserve)
        self._fresh = self.requests.fresh or self.tokens.fresh
        self._estimate = estimate
        self._learn = learn
        # one caller at a time waits in the budgets (the head); the rest wait here, in order
        self._gate = Permits(1)
        self._paused_until = -math.inf
        self._clock: object = None
        self._probe: anyio.Event | None = None  # set when the probing call is answered
        self._backoffs = 0  # 429s in a row that said nothing of when to come back
        self._calls = 0
        self._rate_limited = 0
        self._paused = 0.0
        self._estimated = 0.0
        self._reported = 0

    def cost_of(self, request: Any) -> float:
        estimate = self._estimate
        value = estimate(request)
        if (type(value) is int or type(value) is float) and 0 <= value < math.inf:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if 0 <= number < math.inf:
                return number
        raise ValueError(
            f"the estimate function {callable_name(estimate)!r} returned {value!r}; an "
            f"estimate must be a finite number of tokens >= 0"
        )

    # -- admission ---------------------------------------------------------------------------

    def _pause_left(self, now: float) -> float:
        until = self._paused_until
        if until <= now:
            return 0.0
        if self._clock is not _clock():
            self._paused_until = -math.inf  # a pause on another loop's clock: long gone
            return 0.0
        return until - now

    def _learning(self) -> bool:
        return self.requests.state == UNKNOWN or self.tokens.state == UNKNOWN

    def _start(self) -> None:
        # the buckets made from numbers hold their reserve back from the start (it needs the
        # running loop's clock, so it waits for the first call)
        self._fresh = False
        for budget in (self.requests, self.tokens):
            if budget.fresh:
                budget.start()

    def admit_nowait(self, cost: float) -> _Admission | None:
        """Admits a call if nothing makes it wait; None otherwise (then `admit`)."""
        if self._fresh:
            self._start()
        gate = self._gate
        if gate.queue or gate.available < 1 or self._learning():
            return None
        if self._paused_until > -math.inf and self._pause_left(current_time()):
            return None
        tokens: Taken | None = None
        backend = self.tokens.backend
        if backend is not None:
            if not backend.acquire_nowait(cost):
                return None
            tokens = Taken(backend, cost)
        requests: Taken | None = None
        backend = self.requests.backend
        if backend is not None:
            if not backend.acquire_nowait(_REQUEST):
                if tokens is not None:
                    self.tokens.refund(tokens, cost)
                return None
            requests = Taken(backend, _REQUEST)
        self._calls += 1
        return _Admission(cost, requests, tokens)

    async def admit(self, cost: float) -> _Admission:
        """Waits its turn, the pause, the probe and the budgets; admits the call."""
        if self._fresh:
            self._start()
        gate = self._gate
        if not gate.take_nowait():
            taking = gate.take()  # behind the callers already waiting: a pause holds the head
            await (taking if _observe.wait is None else _observe.wait("provider_quota", taking))
        requests: Taken | None = None
        tokens: Taken | None = None
        try:
            while True:
                await self._wait_pause()
                probe = self._probe
                if probe is None or not self._learning():
                    break
                await probe.wait()  # the limits are being learned: one call at a time
            requests = await self.requests.take(_REQUEST)
            tokens = await self.tokens.take(cost)
            await self._wait_pause()  # a pause that began meanwhile holds these too
            admission = _Admission(cost, requests, tokens)
            if self._learning():
                admission.probe = True
                self._probe = anyio.Event()
            self._calls += 1
            return admission
        except BaseException:
            if requests is not None:
                self.requests.refund(requests, requests.cost)
            if tokens is not None:
                self.tokens.refund(tokens, tokens.cost)
            raise
        finally:
            gate.give()

    async def _wait_pause(self) -> None:
        while True:
            left = self._pause_left(current_time())
            if not left:
                return
            pause = anyio.sleep_until(self._paused_until)  # a later 429 may have extended it
            await (
                pause if _observe.wait is None else _observe.wait("provider_quota", pause, "pause")
            )

    def blocked(self) -> bool:
        """Whether a call would wait now for something other than the budgets' tokens."""
        gate = self._gate
        if gate.queue or gate.available < 1:
            return True
        if self._probe is not None and self._learning():
            return True
        return bool(self._paused_until > -math.inf and self._pause_left(current_time()))

    def give_back(self, admission: _Admission) -> None:
        """Undoes an admission whose call was refused further in, never sent."""
        if admission.requests is not None:
            self.requests.refund(admission.requests, admission.requests.cost)
        if admission.tokens is not None:
            self.tokens.refund(admission.tokens, admission.tokens.cost)
        self._end_probe(admission, answered=False)

    # -- what the answer says ----------------------------------------------------------------

    def answered(self, admission: _Admission, response: object) -> None:
        """Settles the tokens with the usage reported; learns from the rate-limit headers."""
        usage = getattr(response, "usage", None)
        total = getattr(usage, "total_tokens", None) if usage is not None else None
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            self._estimated += admission.cost
            self._reported += total
            taken = admission.tokens
            if taken is not None:
                if total > admission.cost:
                    self.tokens.charge(total - admission.cost)
                elif total < admission.cost:
                    self.tokens.refund(taken, admission.cost - total)
        info = getattr(response, "rate_limits", None)
        if isinstance(info, RateLimitInfo):
            self._follow(info)
        self._backoffs = 0
        self._end_probe(admission, answered=True)

    async def failed(self, admission: _Admission, error: BaseException) -> None:
        """Learns what a failure says; a 429 pauses every caller of the quota."""
        if isinstance(error, ProviderError):
            self._follow(error.rate_limits)
        self._end_probe(admission, answered=False)
        if not isinstance(error, RateLimited):
            return
        self._rate_limited += 1
        if not error.retryable:  # insufficient_quota and the like: waiting does not help
            return
        seconds = error.retry_after
        if seconds is None:
            self._backoffs += 1
            seconds = _FIRST_BACKOFF * 2.0 ** min(self._backoffs - 1, 16)
        await self._pause(min(seconds, self._max_pause))

    def _follow(self, info: RateLimitInfo | None) -> None:
        if not self._learn or info is None:
            return
        self.requests.learn(info.limit_requests, info.remaining_requests)
        self.tokens.learn(info.limit_tokens, info.remaining_tokens)

    def _end_probe(self, admission: _Admission, *, answered: bool) -> None:
        if not admission.probe:
            return
        if answered:  # the answer reported no limit for these: the provider sets none
            for budget in (self.requests, self.tokens):
                if budget.state == UNKNOWN:
                    budget.state = OPEN
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.set()

    async def _pause(self, seconds: float) -> None:
        now = current_time()
        until = now + seconds
        if self._pause_left(now) and until <= self._paused_until:
            return  # another caller's 429 paused everyone at least as long
        self._paused += until - max(now, self._paused_until)
        self._paused_until = until
        self._clock = _clock()
        # the budgets hold nothing until then, for every caller of them: other services of
        # this layer, other layers given the same bucket, other processes sharing it in Redis
        await self.requests.drain(seconds)
        await self.tokens.drain(seconds)

    def statistics(self) -> ProviderQuotaStatistics:
        requests, tokens = self.requests, self.tokens
        gate = self._gate
        return ProviderQuotaStatistics(
            requests_limit=requests.limit,
            tokens_limit=tokens.limit,
            requests_available=_level(requests),
            tokens_available=_level(tokens),
            learned_requests=requests.learned,
            learned_tokens=tokens.learned,
            calls=self._calls,
            rate_limited=self._rate_limited,
            paused=self._paused,
            pause_left=self._pause_left(current_time()),
            tokens_estimated=self._estimated,
            tokens_reported=self._reported,
            waiting=gate.waiting + (1 if gate.available < 1 else 0),
        )

    def describe(self) -> str:
        return f"requests={self.requests.describe()}, tokens={self.tokens.describe()}"


def _level(budget: Budget) -> float | None:
    backend = budget.backend
    return None if backend is None else backend.statistics().tokens
