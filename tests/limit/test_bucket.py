from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from towerpy import RateBackend, RateStatistics, RequestTooLarge, TokenBucket
from towerpy._waiter import new_alarm
from towerpy.limit import bucket as bucket_module
from towerpy.testing import VirtualTimeEventLoop, wait_all_tasks_blocked

if TYPE_CHECKING:
    from collections.abc import Sequence

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


def assert_window_bound(
    log: Sequence[tuple[float, float, bool]], burst: float, rate: float, per: float
) -> None:
    """Checks that every window ending at an admission holds at most burst + rate * t / per.

    ``log`` lists, in the order they happened, (time, tokens, admitted): admissions (net of what
    was refunded of them) and charges (counted when they were charged).
    """
    for last, (end, _, admitted) in enumerate(log):
        if not admitted:
            continue  # a charge is not admitted: the debt it makes delays the next admissions
        total = 0.0
        for first in range(last, -1, -1):
            at, tokens, _ = log[first]
            total += tokens
            bound = burst + rate * (end - at) / per
            assert total <= bound + 1e-9, f"{total} tokens in [{at}, {end}], above {bound}: {log}"


async def test_a_refund_of_tokens_taken_before_the_bucket_was_last_full_gives_nothing_back() -> (
    None
):
    bucket = TokenBucket(1, burst=1)
    start = anyio.current_time()
    assert bucket.acquire_nowait(1)
    receipt = bucket.taken
    await anyio.sleep(1)  # full again: those tokens are refilled
    assert bucket.acquire_nowait(1)
    bucket.refund(1, receipt)
    assert bucket.statistics().tokens == 0
    await bucket.acquire(1)
    assert anyio.current_time() - start == 2


async def test_a_late_refund_gives_back_only_what_still_counts_of_its_tokens() -> None:
    bucket = TokenBucket(1, burst=2)
    start = anyio.current_time()
    log: list[tuple[float, float, bool]] = []

    async def take(cost: float) -> float:
        await bucket.acquire(cost)
        log.append((anyio.current_time() - start, cost, True))
        return bucket.taken

    receipt = await take(1)  # 1 left
    await anyio.sleep(0.5)
    await take(1)  # 0.5 left
    await anyio.sleep(1)
    await take(1)  # 0.5 left
    # Had the first token never been taken, the bucket would have been full (2) at 1.5 s
    # before the third: it holds 1 now, not the 1.5 that giving the whole token back makes.
    bucket.refund(1, receipt)
    log[0] = (0, 0, True)
    assert bucket.statistics().tokens == 1
    await take(1.5)
    assert log[-1][0] == 2
    assert_window_bound(log, 2, 1, 1)


async def test_refunds_of_tokens_just_taken_give_them_all_back_in_any_order() -> None:
    bucket = TokenBucket(1, burst=4)
    receipts = []
    for cost in (1, 2, 1):
        assert bucket.acquire_nowait(cost)
        receipts.append(bucket.taken)
    await anyio.sleep(0.5)
    bucket.refund(1, receipts[0])
    bucket.refund(1, receipts[2])
    bucket.refund(2, receipts[1])
    assert bucket.statistics().tokens == 4
    bucket.refund(1)  # more than was taken: the bucket holds no more than its burst
    assert bucket.statistics().tokens == 4


async def test_a_refund_without_a_receipt_gives_back_the_last_tokens_taken() -> None:
    bucket = TokenBucket(1, burst=4)
    assert bucket.acquire_nowait(1)
    await anyio.sleep(0.5)
    assert bucket.acquire_nowait(3)  # 0.5 left
    bucket.refund(3)
    assert bucket.statistics().tokens == 3.5


async def test_a_debt_counts_as_tokens_taken_when_it_is_charged() -> None:
    bucket = TokenBucket(1, burst=2)
    assert bucket.acquire_nowait(1)
    receipt = bucket.taken
    await anyio.sleep(0.5)
    bucket.charge(2)  # -0.5: the charge is taken after the first token, so it keeps counting
    bucket.refund(1, receipt)
    # Without the first token: 2 at 0.5 s, then 2 charged: 0 left (the refund gives back 0.5).
    assert bucket.statistics().tokens == 0
    assert bucket.taken == 3


@settings(deadline=None, max_examples=60)
@given(
    rate=st.sampled_from([1, 2, 4]),
    per=st.sampled_from([0.5, 1, 2]),
    burst=st.integers(1, 6),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("acquire"), st.integers(0, 6)),
            st.tuples(st.just("refund"), st.integers(0, 99), st.integers(1, 4)),
            st.tuples(st.just("charge"), st.integers(0, 3)),
            st.tuples(st.just("sleep"), st.integers(1, 16)),
        ),
        max_size=40,
    ),
)
async def test_no_window_admits_more_than_burst_plus_rate_whatever_is_refunded_or_charged(
    rate: float, per: float, burst: int, ops: list[tuple[Any, ...]]
) -> None:
    bucket = TokenBucket(rate, per, burst)
    start = anyio.current_time()
    log: list[tuple[float, float, bool]] = []
    receipts: list[tuple[int, float]] = []  # each admission: its place in the log, its receipt
    for op in ops:
        kind = op[0]
        if kind == "acquire":
            cost = min(op[1], burst)
            await bucket.acquire(cost)
            receipts.append((len(log), bucket.taken))
            log.append((anyio.current_time() - start, cost, True))
        elif kind == "refund" and receipts:
            index, receipt = receipts[op[1] % len(receipts)]
            at, cost, _ = log[index]
            given_back = cost * op[2] / 4  # a quarter to all of what is left of it
            log[index] = (at, cost - given_back, True)
            bucket.refund(given_back, receipt)
        elif kind == "charge":
            bucket.charge(op[1])
            log.append((anyio.current_time() - start, op[1], False))
        elif kind == "sleep":
            await anyio.sleep(op[1] / 8)
    assert_window_bound(log, burst, rate, per)


def at_time(backend: str, start: float) -> dict[str, Any]:
    """Backend options for a virtual clock that starts at ``start``."""
    if backend == "trio":
        clock = MockClock(autojump_threshold=0)
        clock.jump(start)
        return {"clock": clock}

    def loop_factory() -> VirtualTimeEventLoop:
        loop = VirtualTimeEventLoop()
        loop.jump(start)
        return loop

    return {"loop_factory": loop_factory}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(("first", "second"), [(1000, 0), (0, 5000)])
def test_a_bucket_used_by_a_new_event_loop_holds_what_it_held_on_the_last(
    backend: str, first: float, second: float
) -> None:
    bucket = TokenBucket(1, burst=2)

    async def empty_it() -> float:
        assert bucket.acquire_nowait(2)  # the next token is due in 1 s
        return anyio.current_time()

    async def wait_for_a_token() -> tuple[float, float]:
        tokens = bucket.statistics().tokens
        start = anyio.current_time()
        with anyio.fail_after(10):  # on the old clock's time, it would wait ~1000 s
            await bucket.acquire(1)
        return tokens, anyio.current_time() - start

    assert anyio.run(empty_it, backend=backend, backend_options=at_time(backend, first)) == first
    # the old clock stands still: the new one starts where it stopped, however far from it
    options = at_time(backend, second)
    assert anyio.run(wait_for_a_token, backend=backend, backend_options=options) == (0, 1)


async def test_statistics_show_tokens_without_the_clock_rounding_errors() -> None:
    bucket = TokenBucket(100, burst=1)
    assert bucket.acquire_nowait(1)
    await anyio.sleep(0.001)  # 1 - 0.009 / 0.01 is 0.09999999999999987 in floats
    assert repr(bucket.statistics().tokens) == "0.1"
    assert repr(bucket.statistics()) == (
        "RateStatistics(rate=100.0, per=1.0, burst=1.0, tokens=0.1, waiting=0)"
    )
