"""RedisTokenBucket behind RateLimitLayer, on a real server, on asyncio (redis.asyncio) and trio
(coredis).

Real clock: waits are kept to fractions of a second, with the tolerance stated at each check.
Buckets that must not refill during a test have a rate of a few tokens an hour.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import RateLimitLayer, RequestTooLarge, ServiceClosed, service_fn
from towerpy.limit import RateBackend
from towerpy.redis import RedisRateStatistics, RedisTokenBucket
from towerpy.redis._client import text

from .support import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

SLOW = 3600.0  # per: a bucket that gains a token every few minutes, i.e. not during a test


async def echo(request: int) -> int:
    return request


async def level(bucket: RedisTokenBucket) -> float:
    """The shared bucket's tokens now, as Redis says (a try of cost 0 takes nothing)."""
    await bucket.try_acquire(0)
    return bucket.statistics().tokens


async def queued(client: Any, bucket: RedisTokenBucket) -> int:
    return int(await client.zcard(bucket._keys[1]))


async def test_it_is_a_rate_backend_and_starts_full(client: Any, name: str) -> None:
    bucket = RedisTokenBucket(client, name, 10, per=SLOW)
    assert isinstance(bucket, RateBackend)
    assert bucket.statistics() == RedisRateStatistics(10, SLOW, 10, 10, 0, 0, 0)
    async with bucket:
        assert await level(bucket) == 10


async def test_objects_with_the_same_name_share_one_budget(client: Any, names: Any) -> None:
    name = names()
    first = RedisTokenBucket(client, name, 10, per=SLOW)
    second = RedisTokenBucket(client, name, 10, per=SLOW)
    other = RedisTokenBucket(client, names(), 10, per=SLOW)
    async with first, second, other:
        await first.acquire(3)
        assert await level(second) == pytest.approx(7, abs=0.01)
        assert await level(other) == 10


async def test_ready_reserves_a_token_and_call_spends_that_one(client: Any, name: str) -> None:
    bucket = RedisTokenBucket(client, name, 10, per=SLOW)
    service = RateLimitLayer(limiter=bucket).layer(service_fn(echo))
    async with bucket:
        await service.ready()
        assert bucket.statistics().tokens == pytest.approx(9, abs=0.01)
        assert await service.call(1) == 1
        assert await level(bucket) == pytest.approx(9, abs=0.01)


async def test_an_unused_reservation_comes_back_when_its_task_ends(client: Any, name: str) -> None:
    bucket = RedisTokenBucket(client, name, 10, per=SLOW)
    service = RateLimitLayer(limiter=bucket).layer(service_fn(echo))
    async with bucket:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.ready)
        # the task has ended: its token is refunded (queued, then sent by the bucket's task)

        async def refunded() -> bool:
            return await level(bucket) == pytest.approx(10, abs=0.01)

        await eventually(refunded)


async def test_actual_costs_settle_against_the_shared_budget(client: Any, name: str) -> None:
    bucket = RedisTokenBucket(client, name, 10, per=SLOW)
    used = iter([2, 9])
    service = RateLimitLayer(
        limiter=bucket, cost=lambda request: 5, actual_cost=lambda request, response: next(used)
    ).layer(service_fn(echo))
    observer = RedisTokenBucket(client, name, 10, per=SLOW)  # another process, say
    async with bucket, observer:
        await service(1)  # estimated 5, used 2: 3 come back

        async def at(expected: float) -> bool:
            return await level(observer) == pytest.approx(expected, abs=0.01)

        await eventually(lambda: at(8))
        await service(2)  # estimated 5, used 9: 4 more are charged, into debt
        await eventually(lambda: at(-1))
        assert not await observer.try_acquire(0.5)


async def test_a_refund_admits_the_waiting_head_at_once(client: Any, name: str) -> None:
    bucket = RedisTokenBucket(client, name, 1, burst=5)  # 5 s to refill
    async with bucket:
        await bucket.acquire(5)
        admitted = anyio.Event()

        async def wait() -> None:
            await bucket.acquire(5)
            admitted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await eventually(lambda: bucket.statistics().waiting_here == 1)
            start = anyio.current_time()
            bucket.refund(5)
            await admitted.wait()
        # one round trip for the refund, a message, one to be admitted: 0.5 s is ample
        assert anyio.current_time() - start < 0.5


async def test_a_cost_above_burst_is_refused_at_once_without_asking_redis(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 10, burst=4)
    service = RateLimitLayer(limiter=bucket, cost=lambda request: 5).layer(service_fn(echo))
    with pytest.raises(RequestTooLarge, match="costing 5 tokens can never pass a bucket"):
        await bucket.acquire(5)  # not even running: no I/O is needed to know
    async with bucket:
        with pytest.raises(RequestTooLarge):
            await service(1)
        with pytest.raises(RequestTooLarge):
            await bucket.try_acquire(4.5)


async def test_outside_async_with_acquiring_says_to_enter_it(client: Any, name: str) -> None:
    bucket = RedisTokenBucket(client, name, 10)
    with pytest.raises(ServiceClosed, match="enter it first with `async with limiter:`"):
        await bucket.acquire(1)
    async with bucket:
        pass
    with pytest.raises(ServiceClosed):
        await bucket.try_acquire(1)


async def test_it_runs_in_one_async_with_at_a_time(client: Any, name: str) -> None:
    bucket = RedisTokenBucket(client, name, 10)
    async with bucket:
        with pytest.raises(RuntimeError, match="already running"):
            await bucket.__aenter__()
    async with bucket:  # and may run again afterwards
        assert await bucket.try_acquire(1)


async def test_a_costly_waiter_is_not_overtaken_by_a_cheap_one_behind_it(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 20, burst=4)  # a token every 50 ms
    order: list[str] = []

    async def take(label: str, cost: float) -> None:
        await bucket.acquire(cost)
        order.append(label)

    async with bucket:
        await bucket.acquire(4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(take, "costly", 4)
            await eventually(lambda: bucket.statistics().waiting_here == 1)
            tg.start_soon(take, "cheap", 1)
    assert order == ["costly", "cheap"]


async def test_a_waiter_cancelled_in_the_queue_takes_nothing_and_the_next_moves_up(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 5, burst=1)  # a token every 200 ms
    async with bucket:
        await bucket.acquire(1)
        async with anyio.create_task_group() as tg:
            first = anyio.CancelScope()

            async def leave() -> None:
                with first:
                    await bucket.acquire(1)

            tg.start_soon(leave)
            await eventually(lambda: bucket.statistics().waiting_here == 1)
            start = anyio.current_time()
            tg.start_soon(bucket.acquire, 1)
            await eventually(lambda: bucket.statistics().waiting_here == 2)
            first.cancel()
        # the next token (200 ms after the first) went to the second waiter: had the first
        # taken one, it would have waited 400 ms; 330 ms leaves 130 ms for round trips
        assert anyio.current_time() - start < 0.33
        assert await queued(client, bucket) == 0


async def test_try_acquire_takes_tokens_only_when_that_needs_no_waiting(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 2, per=SLOW)
    async with bucket:
        assert await bucket.try_acquire(2)
        assert not await bucket.try_acquire(1)
        assert await queued(client, bucket) == 0  # a refused try leaves no ticket behind


async def test_statistics_show_the_waiters_here_and_the_shared_level(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 4, burst=1)
    async with bucket:
        await bucket.acquire(1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(bucket.acquire, 1)
            tg.start_soon(bucket.acquire, 1)
            await eventually(lambda: bucket.statistics().waiting_here == 2)
            stats = bucket.statistics()
            assert stats.waiting >= 1  # the queue as of the last reply (1 or 2)
            assert stats.tokens < 1
        assert bucket.statistics().waiting_here == 0


async def test_leaving_the_block_withdraws_the_tickets_of_this_process(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 1, per=SLOW)
    outcome: list[BaseException] = []

    async def wait() -> None:
        try:
            await bucket.acquire(1)
        except ServiceClosed as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg, bucket:
        await bucket.acquire(1)
        tg.start_soon(wait)
        await eventually(lambda: bucket.statistics().waiting_here == 1)
    assert len(outcome) == 1
    assert await queued(client, bucket) == 0


async def test_the_admitting_reply_carries_redis_time_and_arrival_order(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 10)
    async with bucket:
        first = await bucket._take(1.0, "n")
        second = await bucket._take(1.0, "n")
    assert first is not None
    assert second is not None
    assert int(text(second[1])) == int(text(first[1])) + 1
    assert float(text(second[2])) >= float(text(first[2])) > 1.7e15


def test_bad_arguments_are_refused_at_construction() -> None:
    import redis.asyncio

    client = redis.asyncio.Redis()
    with pytest.raises(ValueError, match="name must not be empty"):
        RedisTokenBucket(client, "", 1)
    with pytest.raises(TypeError, match="name must be a str"):
        RedisTokenBucket(client, 3, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
        RedisTokenBucket(client, "x", 0)
    with pytest.raises(ValueError, match='on_unavailable must be "raise"'):
        RedisTokenBucket(client, "x", 1, on_unavailable="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="op_timeout must be a finite number > 0"):
        RedisTokenBucket(client, "x", 1, op_timeout=0)
    assert repr(RedisTokenBucket(client, "x", 500, per=60)) == (
        "RedisTokenBucket('x', rate=500, per=60, burst=500)"
    )
