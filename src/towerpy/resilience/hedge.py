"""Hedge: sends a second copy of a slow request, and keeps whichever answers first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio
from typing_extensions import override

from .._backend import current_time
from .._service import Middleware, Service
from .._validate import check_plain_function, check_positive_int, check_seconds
from .._waiter import new_alarm
from ..retry.budget import RetryBudget
from ._window import LatencyWindow

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._waiter import Alarm

__all__ = ["Hedge", "HedgeLayer", "HedgeStatistics"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_NAME = "towerpy hedge"  # a task name given: anyio would otherwise build one per request
_BUDGET_TTL = 10.0  # seconds: hedges are at most budget_ratio of the requests of this window


def _always(request: object) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class HedgeStatistics:
    """What a hedge has done.

    Attributes:
        requests: Requests received.
        hedged: Requests for which a second attempt was sent.
        hedge_wins: Of those, the ones the second attempt answered first.
        samples: Latencies in the window the quantile is read from.
        delay: How long a request waits before it is hedged now; None while there are fewer
            than ``min_samples`` samples (and no fixed ``delay``).
    """

    requests: int
    hedged: int
    hedge_wins: int
    samples: int
    delay: float | None


@final
class _Race(Generic[RespT]):
    __slots__ = ("alarm", "done", "first_error", "hedge_error", "hedged", "response", "stopped")

    def __init__(self) -> None:
        self.done = False
        self.hedged = False
        self.stopped = False
        self.alarm: Alarm | None = None
        self.response: RespT | None = None
        self.first_error: Exception | None = None
        self.hedge_error: Exception | None = None

    def stop(self) -> None:
        """Ends the wait for the hedge delay: no second attempt will be sent."""
        self.stopped = True
        if self.alarm is not None:
            self.alarm.wake()


def _check_ratio(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"budget_ratio must be a number from 0 to 1, got {type(value).__name__}")
    if not 0 <= value <= 1:
        raise ValueError(
            f"budget_ratio must be from 0 to 1 (the share of requests that may be hedged), "
            f"got {value!r}"
        )
    return float(value)


def _check_quantile(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"quantile must be a number in (0, 1], got {type(value).__name__}")
    if not 0 < value <= 1:
        raise ValueError(f"quantile must be in (0, 1] (0.95: the 95th percentile), got {value!r}")
    return float(value)


@final
class Hedge(Middleware[ReqT, RespT], direct_call=True):
    """Sends a second attempt of a request that has not answered in time; the first answer wins.

    A request goes to the inner service at once. If it has not answered after the hedge
    delay, the same request is sent again (to the same inner service: put a `Balance` of
    several endpoints below to send it elsewhere), and the first of the two to return is the
    answer; the other is cancelled at once (its ``finally`` blocks run, nothing keeps
    running). An attempt that fails does not end the race while the other still runs; when
    both fail, the first attempt's error propagates, with a note naming the second's.

    The delay is ``delay`` when given; otherwise the ``quantile`` of the latest ``window``
    latencies of successful attempts, once there are ``min_samples`` of them (before that,
    nothing is hedged). At most ``budget_ratio`` of the requests of the last 10 seconds are
    hedged, exactly (0.1: one in ten at most), so hedging cannot multiply the load of a
    service that has become slow for everyone. Only requests that ``idempotent`` accepts are
    hedged: a request that must not run twice (a payment, a tool with side effects) is sent
    once.

    - ``ready()`` is the inner service's; its reservation serves the first attempt, which runs
      in the caller's task. The second attempt runs in a task of its own and waits for the
      inner service's readiness there.
    - ``call()`` raises what the attempts raise (above); cancellation cancels both.

    Args:
        inner: The service to call.
        delay: Seconds to wait before hedging; None to use the observed latency ``quantile``.
        quantile: Which latency quantile is the delay (0.95: hedge the slowest 5 %).
        budget_ratio: The share of requests that may be hedged, from 0 to 1.
        min_samples: Latencies needed before the quantile is used.
        idempotent: A plain function telling whether a request may be sent twice.
        window: How many of the latest latencies the quantile is read from.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range (``window`` below ``min_samples``, say).
    """

    __slots__ = (
        "_budget",
        "_delay",
        "_hedged",
        "_idempotent",
        "_min_samples",
        "_quantile",
        "_requests",
        "_window",
        "_wins",
    )

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        delay: float | None = None,
        *,
        quantile: float = 0.95,
        budget_ratio: float = 0.1,
        min_samples: int = 20,
        idempotent: Callable[[Any], bool] = _always,
        window: int = 1000,
    ) -> None:
        settings = _settings(delay, quantile, budget_ratio, min_samples, idempotent, window)
        super().__init__(inner)
        self._delay, self._quantile, ratio, self._min_samples, self._idempotent, size = settings
        self._budget = RetryBudget(_BUDGET_TTL, min_per_second=0, retry_ratio=ratio)
        self._window = LatencyWindow(size)
        self._requests = self._hedged = self._wins = 0

    def _hedge_delay(self) -> float | None:
        if self._delay is not None:
            return self._delay
        if len(self._window) < self._min_samples:
            return None
        return self._window.quantile(self._quantile)

    @override
    async def call(self, request: ReqT) -> RespT:
        self._requests += 1
        self._budget.deposit()
        delay = self._hedge_delay()
        if delay is None or not self._idempotent(request):
            start = current_time()
            response: RespT = await self.inner(request)
            self._window.add(current_time() - start)
            return response
        return await self._race(request, delay)

    async def _race(self, request: ReqT, delay: float) -> RespT:
        race: _Race[RespT] = _Race()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._second, request, delay, race, tg.cancel_scope, name=_NAME)
            start = current_time()
            try:
                response = await self.inner(request)  # in this task: it has the reservation
            except Exception as exc:
                race.first_error = exc
                if not race.hedged:
                    race.stop()  # no second attempt yet: none will be sent
            else:
                self._window.add(current_time() - start)
                race.done, race.response = True, response
                if race.hedged:
                    tg.cancel_scope.cancel()  # the second attempt loses
                else:
                    race.stop()  # the common case: the wait for the delay ends, nothing else
        if race.done:
            return race.response  # type: ignore[return-value]
        error = race.first_error
        if error is None:  # pragma: no cover - the body either answered or failed
            raise RuntimeError("hedge: no attempt answered")
        if race.hedge_error is not None:
            error.add_note(f"towerpy: the hedged attempt failed too: {race.hedge_error!r}")
        raise error

    async def _second(
        self, request: ReqT, delay: float, race: _Race[RespT], scope: anyio.CancelScope
    ) -> None:
        alarm = race.alarm = new_alarm()
        # an alarm the first attempt cuts short when it ends first: cheaper than a cancellation
        if race.stopped or not await alarm.sleep_until(current_time() + delay):
            return
        if race.stopped or not self._budget.withdraw():
            return
        race.hedged = True
        self._hedged += 1
        start = current_time()
        try:
            response = await self.inner(request)
        except Exception as exc:
            race.hedge_error = exc  # the first attempt may still answer
            return
        self._window.add(current_time() - start)
        if not race.done:
            race.done, race.response = True, response
            self._wins += 1
            scope.cancel()  # cancels the first attempt, in the caller's task

    def statistics(self) -> HedgeStatistics:
        """Returns the counts, and the delay a request would be hedged after now."""
        return HedgeStatistics(
            self._requests, self._hedged, self._wins, len(self._window), self._hedge_delay()
        )

    def __repr__(self) -> str:
        return f"Hedge({self.inner!r}, delay={self._delay!r}, quantile={self._quantile})"


def _settings(
    delay: object,
    quantile: object,
    budget_ratio: object,
    min_samples: object,
    idempotent: object,
    window: object,
) -> tuple[float | None, float, float, int, Callable[[Any], bool], int]:
    """Checks `Hedge`'s arguments; returns them."""
    fixed = None if delay is None else check_seconds("delay", delay)
    q = _check_quantile(quantile)
    ratio = _check_ratio(budget_ratio)
    samples = check_positive_int("min_samples", min_samples)
    check_plain_function("idempotent", idempotent)
    size = check_positive_int("window", window)
    if fixed is None and size < samples:
        raise ValueError(
            f"window ({size}) must hold at least min_samples ({samples}) latencies, or the "
            f"quantile is never read"
        )
    return fixed, q, ratio, samples, idempotent, size  # type: ignore[return-value]


@final
class HedgeLayer:
    """Wraps services in a `Hedge`: slow requests get a second attempt; the first answer wins.

    Each service this layer wraps gets its own latency window and budget. The arguments are
    `Hedge`'s.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range.

    Example:
        >>> model = ServiceBuilder().layer(HedgeLayer(idempotent=is_read_only)).service(step)
    """

    __slots__ = ("_settings",)

    def __init__(
        self,
        delay: float | None = None,
        *,
        quantile: float = 0.95,
        budget_ratio: float = 0.1,
        min_samples: int = 20,
        idempotent: Callable[[Any], bool] = _always,
        window: int = 1000,
    ) -> None:
        _settings(delay, quantile, budget_ratio, min_samples, idempotent, window)
        self._settings = (delay, quantile, budget_ratio, min_samples, idempotent, window)

    def layer(self, inner: Service[ReqT, RespT]) -> Hedge[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `Hedge`."""
        delay, quantile, ratio, samples, idempotent, window = self._settings
        return Hedge(
            inner,
            delay,
            quantile=quantile,
            budget_ratio=ratio,
            min_samples=samples,
            idempotent=idempotent,
            window=window,
        )

    def __repr__(self) -> str:
        delay, quantile, ratio, *_ = self._settings
        return f"HedgeLayer({delay!r}, quantile={quantile}, budget_ratio={ratio})"
