"""flush(): once it returns, Redis has seen what the limiter queued and what it asked."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket
from towerpy.testing import wait_all_tasks_blocked

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

SLOW = 3600.0  # per: a bucket that gains no token during a test


async def test_after_flush_a_queued_release_is_in_redis_for_every_process(
    client: Any, name: str
) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    other = RedisConcurrencyLimiter(client, name, 1)  # another process, say
    async with limiter, other:
        for _ in range(3):
            limiter.release(await limiter.acquire())  # queued, sent by the background task
            await limiter.flush()
            permit = await other.try_acquire()  # no waiting, no polling: it is free already
            assert permit is not None
            other.release(permit)
            await other.flush()


async def test_after_flush_a_queued_refund_is_in_redis_and_covers_every_key(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 1, per=SLOW)
    tenant = bucket.for_key("acme")
    async with bucket:
        await bucket.acquire(1)
        await tenant.acquire(1)
        assert not await bucket.try_acquire(1)
        bucket.refund(1)
        tenant.refund(1)
        await bucket.flush()  # one queue for the bucket and its views
        assert await bucket.try_acquire(1)
        assert await tenant.try_acquire(1)


async def test_flush_waits_for_the_answer_to_an_acquisition_under_way(
    client: Any, name: str
) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    async with limiter:
        held = await limiter.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.acquire)
            await wait_all_tasks_blocked()  # it has asked Redis; the answer is on its way
            await limiter.flush()
            assert limiter.statistics().waiting_here == 1  # answered: it waits in the queue
            tg.cancel_scope.cancel()
        limiter.release(held)


async def test_flush_returns_at_once_before_and_after_the_limiter_runs(
    client: Any, name: str
) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    with anyio.fail_after(1):
        await limiter.flush()
        async with limiter:
            limiter.release(await limiter.acquire())
        await limiter.flush()  # the close sent the release: nothing is left to wait for
