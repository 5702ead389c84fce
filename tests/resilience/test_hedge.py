"""Hedge: when a second attempt goes, who wins, what is cancelled, and the budget."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import anyio
import pytest

from towerpy import Hedge, HedgeLayer, HedgeStatistics, ProviderUnavailable, ServiceBuilder
from towerpy import service_fn as make_service
from towerpy.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


class Backend:
    """Each attempt takes the next latency of the script (then ``default``), or fails."""

    def __init__(self, *latencies: float | Exception, default: float = 1.0) -> None:
        self.script: deque[float | Exception] = deque(latencies)
        self.default = default
        self.started: list[float] = []
        self.finished: list[float] = []  # every attempt's finally, cancelled ones included
        self.cancelled = 0
        self.running = 0

    async def __call__(self, request: Any) -> Any:
        step = self.script.popleft() if self.script else self.default
        attempt = len(self.started)
        self.started.append(anyio.current_time())
        self.running += 1
        try:
            if isinstance(step, Exception):
                await anyio.sleep(0.5)
                raise step
            await anyio.sleep(step)
            return f"{request} by attempt {attempt}"
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
            self.finished.append(anyio.current_time())


def hedged(backend: Backend, delay: float | None = 1.0, **kwargs: Any) -> Hedge[Any, Any]:
    return Hedge(make_service(backend), delay, **{"budget_ratio": 1.0, **kwargs})


async def test_a_slow_first_attempt_is_hedged_and_the_faster_second_wins() -> None:
    backend = Backend(10.0, 0.5)
    svc = hedged(backend, 1.0)
    start = anyio.current_time()
    assert await svc("req") == "req by attempt 1"
    assert anyio.current_time() - start == 1.5
    assert backend.started == [start, start + 1.0]
    # the loser was cancelled at once: its finally ran, and nothing is running any more
    assert backend.cancelled == 1
    assert backend.finished == [start + 1.5, start + 1.5]
    assert backend.running == 0
    assert svc.statistics() == HedgeStatistics(1, 1, 1, 1, 1.0)


async def test_a_first_attempt_that_answers_within_the_delay_is_never_hedged() -> None:
    backend = Backend(0.9)
    svc = hedged(backend, 1.0)
    assert await svc("req") == "req by attempt 0"
    await wait_all_tasks_blocked()
    assert len(backend.started) == 1
    assert svc.statistics().hedged == 0


async def test_when_the_first_attempt_answers_first_the_hedge_is_cancelled() -> None:
    backend = Backend(1.5, 5.0)
    svc = hedged(backend, 1.0)
    start = anyio.current_time()
    assert await svc("req") == "req by attempt 0"
    assert anyio.current_time() - start == 1.5
    assert backend.cancelled == 1
    assert backend.running == 0
    assert svc.statistics().hedge_wins == 0


async def test_a_failed_attempt_leaves_the_race_to_the_other() -> None:
    down = ProviderUnavailable("down", retryable=True)
    first_fails = hedged(Backend(down, 0.1), 0.2)  # fails at 0.5, the hedge (from 0.2) answers
    start = anyio.current_time()
    assert await first_fails("req") == "req by attempt 1"
    assert anyio.current_time() - start == pytest.approx(0.3)
    hedge_fails = hedged(Backend(2.0, down), 1.0)
    assert await hedge_fails("req") == "req by attempt 0"


async def test_when_both_attempts_fail_the_first_error_propagates_naming_the_second() -> None:
    first = ProviderUnavailable("first down", retryable=True)
    second = ProviderUnavailable("second down", retryable=True)
    svc = hedged(Backend(first, second), 0.1)
    with pytest.raises(ProviderUnavailable, match="first down") as caught:
        await svc("req")
    assert any("second down" in note for note in caught.value.__notes__)


async def test_a_first_attempt_that_fails_before_the_delay_is_not_hedged() -> None:
    down = ProviderUnavailable("down", retryable=True)
    backend = Backend(down)
    svc = hedged(backend, 1.0)
    start = anyio.current_time()
    with pytest.raises(ProviderUnavailable):
        await svc("req")
    assert anyio.current_time() - start == 0.5
    await wait_all_tasks_blocked()
    assert len(backend.started) == 1


async def test_cancelling_the_caller_cancels_both_attempts() -> None:
    backend = Backend(10.0, 10.0)
    svc = hedged(backend, 1.0)
    with anyio.move_on_after(2.0):
        await svc("req")
    assert backend.cancelled == 2
    assert backend.running == 0
    assert len(backend.finished) == 2


async def test_without_a_delay_the_quantile_of_the_latest_latencies_is_the_delay() -> None:
    backend = Backend(*[0.1 * n for n in range(1, 11)])
    svc = hedged(backend, None, quantile=0.9, min_samples=10, window=10)
    for n in range(9):
        await svc(n)
        assert svc.statistics().delay is None  # fewer than min_samples: nothing is hedged
    await svc(9)
    assert svc.statistics().delay == pytest.approx(0.9)  # the 9th of 10 sorted samples
    # the window is bounded: ten answers of 1 s push every older sample out
    backend.default = 1.0
    for n in range(10):
        await svc(n)
    stats = svc.statistics()
    assert (stats.samples, stats.delay) == (10, 1.0)


async def test_the_budget_caps_hedges_at_exactly_its_share_of_concurrent_requests() -> None:
    backend = Backend(default=5.0)
    svc = Hedge(make_service(backend), 1.0, budget_ratio=0.1)
    async with anyio.create_task_group() as tg:
        for n in range(95):
            tg.start_soon(svc, n)
    assert svc.statistics().hedged == 9  # floor(0.1 * 95)
    assert len(backend.started) == 95 + 9


async def test_the_budget_caps_hedges_of_requests_one_after_another() -> None:
    backend = Backend(default=0.5)  # 8 requests in 4 s: all inside the budget's 10 s window
    svc = Hedge(make_service(backend), 0.2, budget_ratio=0.25)
    hedged_at = []
    for n in range(8):
        before = svc.statistics().hedged
        await svc(n)
        if svc.statistics().hedged > before:
            hedged_at.append(n)
    assert hedged_at == [3, 7]  # the 4th request earns the first hedge, the 8th the second


async def test_a_budget_ratio_of_zero_never_hedges() -> None:
    backend = Backend(default=5.0)
    svc = Hedge(make_service(backend), 1.0, budget_ratio=0)
    for n in range(5):
        await svc(n)
    assert len(backend.started) == 5


async def test_requests_the_idempotent_predicate_refuses_are_sent_once() -> None:
    backend = Backend(default=5.0)
    svc = ServiceBuilder().hedge(1.0, budget_ratio=1.0, idempotent=lambda request: request != "pay")
    built = svc.service(make_service(backend))
    await built("pay")
    assert len(backend.started) == 1
    await built("read")
    assert len(backend.started) == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"delay": -1.0}, ValueError, "delay"),
        ({"delay": "1"}, TypeError, "delay"),
        ({"quantile": 0}, ValueError, "quantile"),
        ({"quantile": 1.5}, ValueError, "quantile"),
        ({"budget_ratio": -0.1}, ValueError, "budget_ratio"),
        ({"budget_ratio": 2}, ValueError, "budget_ratio"),
        ({"budget_ratio": math.nan}, ValueError, "budget_ratio"),
        ({"min_samples": 0}, ValueError, "min_samples"),
        ({"window": 10, "min_samples": 20}, ValueError, "window"),
        ({"idempotent": 3}, TypeError, "idempotent"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        HedgeLayer(**kwargs)
    with pytest.raises(error, match=match):
        ServiceBuilder().hedge(**kwargs)


def test_an_async_idempotent_predicate_is_refused() -> None:
    async def idempotent(request: Any) -> bool:
        return True

    with pytest.raises(TypeError, match="plain"):
        HedgeLayer(idempotent=idempotent)  # type: ignore[arg-type]
