from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import RateBackend, RateStatistics, RequestTooLarge, TokenBucket
from towerpy._waiter import new_alarm
from towerpy.limit import bucket as bucket_module
from towerpy.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def admit_all(bucket: TokenBucket, costs: list[float]) -> list[float]:
    """Queues one request per cost, in order, at the same instant; returns when each got in."""
    start = anyio.current_time()
    admitted: dict[int, float] = {}

    async def request(i: int, cost: float) -> None:
        await bucket.acquire(cost)
        admitted[i] = anyio.current_time() - start

    async with anyio.create_task_group() as tg:
        for i, cost in enumerate(costs):
            tg.start_soon(request, i, cost)
            await wait_all_tasks_blocked()
    return [admitted[i] for i in range(len(costs))]


async def test_it_starts_full_and_admits_each_waiter_when_its_tokens_are_there() -> None:
    bucket = TokenBucket(2, burst=2)  # a token every 0.5 s
    assert await admit_all(bucket, [1, 1, 1, 1, 1]) == [0, 0, 0.5, 1.0, 1.5]


async def test_per_sets_the_period_of_the_rate() -> None:
    bucket = TokenBucket(4, per=60, burst=1)  # four a minute: one every 15 s
    assert await admit_all(bucket, [1, 1, 1]) == [0, 15, 30]


async def test_burst_defaults_to_the_rate() -> None:
    assert TokenBucket(10).burst == 10
    assert TokenBucket(10, per=60).burst == 10
    assert TokenBucket(10, burst=3).burst == 3


async def test_a_costly_waiter_is_not_overtaken_by_cheaper_ones() -> None:
    bucket = TokenBucket(1, burst=4)
    assert bucket.acquire_nowait(4)  # empty now
    # the costly request waits 4 s; the cheap ones behind it each wait their turn after it
    assert await admit_all(bucket, [4, 1, 1]) == [4, 5, 6]


async def test_a_request_above_the_burst_is_refused_at_once() -> None:
    bucket = TokenBucket(10, burst=5)
    start = anyio.current_time()
    with pytest.raises(RequestTooLarge, match=r"costing 6 tokens .* at most 5 \(burst\)"):
        await bucket.acquire(6)
    with pytest.raises(RequestTooLarge):
        await bucket.try_acquire(6)
    assert not bucket.acquire_nowait(6)
    assert anyio.current_time() == start
    assert bucket.statistics().tokens == 5


async def test_a_refund_wakes_the_sleeping_waiter_earlier() -> None:
    bucket = TokenBucket(1, burst=4)
    assert bucket.acquire_nowait(4)
    start = anyio.current_time()
    admitted: list[float] = []

    async def waiter() -> None:
        await bucket.acquire(4)  # due at 4 s
        admitted.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(1)  # one token back by now
        bucket.refund(2)  # three: one more second
    assert admitted == [2]


async def test_a_charge_delays_the_sleeping_waiter() -> None:
    bucket = TokenBucket(1, burst=4)
    assert bucket.acquire_nowait(4)
    start = anyio.current_time()
    admitted: list[float] = []

    async def waiter() -> None:
        await bucket.acquire(4)
        admitted.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(1)
        bucket.charge(3)  # the bucket is in debt: -2 tokens
        assert bucket.statistics().tokens == -2
    assert admitted == [7]


async def test_a_refund_never_fills_the_bucket_above_its_burst() -> None:
    bucket = TokenBucket(1, burst=2)
    bucket.refund(5)
    assert bucket.statistics().tokens == 2
    assert await admit_all(bucket, [2, 1]) == [0, 1]


async def test_a_cancelled_head_waiter_lets_the_next_one_move_up() -> None:
    bucket = TokenBucket(1, burst=4)
    assert bucket.acquire_nowait(4)
    start = anyio.current_time()
    admitted: list[float] = []
    scope = anyio.CancelScope()

    async def costly() -> None:
        with scope:
            await bucket.acquire(4)

    async def cheap() -> None:
        await bucket.acquire(1)
        admitted.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(costly)
        await wait_all_tasks_blocked()
        tg.start_soon(cheap)
        await wait_all_tasks_blocked()
        assert bucket.statistics().waiting == 2
        await anyio.sleep(0.5)
        scope.cancel()
    assert admitted == [1]  # the cheap one took its token as soon as it was there
    assert bucket.statistics() == RateStatistics(1, 1, 4, 0, 0)


async def test_a_cancelled_waiter_behind_the_head_takes_nothing() -> None:
    bucket = TokenBucket(1, burst=2)
    assert bucket.acquire_nowait(2)
    scope = anyio.CancelScope()

    async def behind() -> None:
        with scope:
            await bucket.acquire(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bucket.acquire, 1)
        await wait_all_tasks_blocked()
        tg.start_soon(behind)
        await wait_all_tasks_blocked()
        scope.cancel()
    assert bucket.statistics().waiting == 0
    assert await admit_all(bucket, [1]) == [1]


async def test_only_the_head_waiter_sleeps_and_each_sleeps_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timed_sleeps: list[float] = []

    class CountingAlarm:
        def __init__(self) -> None:
            self.alarm = new_alarm()

        async def sleep_until(self, deadline: float) -> bool:
            timed_sleeps.append(deadline)
            return await self.alarm.sleep_until(deadline)

        def wake(self) -> None:
            self.alarm.wake()

    monkeypatch.setattr(bucket_module, "new_alarm", CountingAlarm)
    bucket = TokenBucket(4, burst=1)
    start = anyio.current_time()
    admitted = await admit_all(bucket, [1] * 9)
    monkeypatch.undo()
    assert admitted == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert [deadline - start for deadline in timed_sleeps] == admitted[1:]


async def test_waiters_are_admitted_with_a_rate_that_is_not_a_binary_fraction() -> None:
    bucket = TokenBucket(3, burst=1)  # a token every 1/3 s: clock times are rounded
    admitted = await admit_all(bucket, [1] * 31)
    assert admitted[-1] == pytest.approx(10, abs=1e-9)
    assert all(b > a for a, b in itertools.pairwise(admitted[1:]))


@settings(deadline=None, max_examples=40)
@given(
    rate=st.sampled_from([0.5, 1, 2, 4, 8]),
    per=st.sampled_from([0.5, 1, 2]),
    costs=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    extra_burst=st.integers(0, 4),
)
async def test_throughput_after_the_burst_is_exactly_the_rate(
    rate: float, per: float, costs: list[int], extra_burst: int
) -> None:
    burst = 4 + extra_burst
    bucket = TokenBucket(rate, per, burst)
    admitted = await admit_all(bucket, [float(c) for c in costs])
    # every request queued at 0 and served in order: the k-th gets in when the tokens taken
    # so far, beyond the initial burst, have been refilled
    taken = 0.0
    for cost, at in zip(costs, admitted, strict=True):
        taken += cost
        assert at == max(0.0, (taken - burst) * per / rate)


@settings(deadline=None, max_examples=40)
@given(
    rate=st.floats(0.1, 1000),
    per=st.floats(0.01, 100),
    costs=st.lists(st.floats(0, 3), min_size=1, max_size=30),
    arrivals=st.lists(st.floats(0, 5), min_size=30, max_size=30),
)
async def test_rounded_rates_admit_every_waiter_in_order_within_the_bound(
    rate: float, per: float, costs: list[float], arrivals: list[float]
) -> None:
    bucket = TokenBucket(rate, per, burst=3)
    start = anyio.current_time()
    entered: list[int] = []
    admitted: list[tuple[int, float]] = []

    async def request(i: int) -> None:
        await anyio.sleep_until(start + arrivals[i] * per)
        entered.append(i)
        await bucket.acquire(costs[i])
        admitted.append((i, anyio.current_time() - start))

    async with anyio.create_task_group() as tg:  # every waiter gets in: none re-sleeps forever
        for i in range(len(costs)):
            tg.start_soon(request, i)
    assert [i for i, _ in admitted] == entered
    times = [at for _, at in admitted]
    # admission times are differences of clock readings, each exact only to a few ulps of the
    # clock (which keeps running across examples): that much time, in tokens, is the slack
    clock_error = 4 * math.ulp(anyio.current_time())
    for first in range(len(times)):
        for last in range(first, len(times)):
            taken = sum(costs[i] for i, _ in admitted[first : last + 1])
            bound = 3 + rate * (times[last] - times[first] + clock_error) / per
            assert taken <= bound * (1 + 1e-9) + 1e-9


async def test_long_run_throughput_is_the_rate_within_a_tenth_of_a_percent() -> None:
    bucket = TokenBucket(100, burst=10)
    start = anyio.current_time()
    for _ in range(2000):
        await bucket.acquire(1)
    elapsed = anyio.current_time() - start
    # the first 10 pass at once (the burst); the other 1990 at the rate
    assert abs(1990 / elapsed - 100) / 100 < 0.001
    assert elapsed == pytest.approx(19.9, abs=1e-9)


def test_statistics_are_frozen() -> None:
    stats = TokenBucket(5).statistics()
    assert stats == RateStatistics(rate=5, per=1, burst=5, tokens=5, waiting=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.tokens = 0  # type: ignore[misc]


async def test_statistics_show_tokens_refilling() -> None:
    bucket = TokenBucket(2, burst=4)
    assert bucket.acquire_nowait(3)
    assert bucket.statistics().tokens == 1
    await anyio.sleep(0.75)
    assert bucket.statistics().tokens == 2.5
    await anyio.sleep(10)
    assert bucket.statistics().tokens == 4


@pytest.mark.parametrize("arg", ["rate", "per", "burst"])
@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf])
def test_a_rate_per_or_burst_that_is_not_positive_and_finite_is_refused(
    arg: str, bad: float
) -> None:
    kwargs: dict[str, Any] = {"rate": 1.0, "per": 1.0, "burst": None, arg: bad}
    with pytest.raises(ValueError, match=rf"^{arg} must be a finite number > 0"):
        TokenBucket(**kwargs)


def test_a_rate_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(TypeError, match="rate must be a finite number > 0, got str '5'"):
        TokenBucket("5")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
async def test_a_cost_that_is_negative_or_not_finite_is_refused(bad: float) -> None:
    bucket = TokenBucket(5)
    for method in (bucket.acquire, bucket.try_acquire):
        with pytest.raises(ValueError, match="cost must be a finite number of tokens >= 0"):
            await method(bad)
    for sync_method in (bucket.refund, bucket.charge):
        with pytest.raises(ValueError, match="cost must be a finite number of tokens >= 0"):
            sync_method(bad)


def test_the_bucket_is_a_rate_backend() -> None:
    assert isinstance(TokenBucket(1), RateBackend)
    assert repr(TokenBucket(500, per=60)) == "TokenBucket(rate=500, per=60, burst=500)"
