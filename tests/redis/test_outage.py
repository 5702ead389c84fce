"""Redis unreachable, slow or restarted: on a private server that each test stops itself.

Real clock: every wait is bounded by the limiter's ``op_timeout`` plus the slack stated.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from towerpy import (
    ConstantBackoff,
    LimiterUnavailable,
    RateLimitLayer,
    RetryLayer,
    RetryPolicy,
    ServiceBuilder,
    service_fn,
)
from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket

from .support import PrivateRedis, eventually, open_client

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

OP_TIMEOUT = 0.3
SLACK = 0.5  # scheduling on a busy 2-core machine, a connection attempt, the error's way up


async def echo(request: int) -> int:
    return request


def outage_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "towerpy.redis"]


async def test_an_unreachable_redis_fails_closed_naming_the_limiter_until_it_answers_again(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "towerpy.redis")
    async with open_client(private_redis.url) as client:
        bucket = RedisTokenBucket(client, "down", 100, op_timeout=OP_TIMEOUT)
        async with bucket:
            await bucket.acquire(1)
            private_redis.kill()
            for _ in range(3):
                start = anyio.current_time()
                with pytest.raises(LimiterUnavailable) as caught:
                    await bucket.acquire(1)
                assert anyio.current_time() - start <= OP_TIMEOUT + SLACK
            error = caught.value
            assert str(error).startswith(
                f"RedisTokenBucket 'down' could not reach redis at 127.0.0.1:{private_redis.port}"
                f" within 0.3s"
            )
            assert error.limiter == "RedisTokenBucket 'down'"
            assert error.retry_after == 1.0
            assert error.__cause__ is not None
            private_redis.start()  # empty: the scripts must be loaded again (NOSCRIPT)

            async def answers() -> bool:
                try:
                    await bucket.acquire(1)
                except LimiterUnavailable:
                    return False
                return True

            await eventually(answers, within=5)
    logs = outage_logs(caplog)
    assert len(logs) == 2, logs  # once when it went, once when it came back
    assert "is unreachable" in logs[0]
    assert "failing closed" in logs[0]
    assert "answers again" in logs[1]


async def test_a_paused_redis_fails_the_call_within_op_timeout(
    private_redis: PrivateRedis,
) -> None:
    async with open_client(private_redis.url) as client:
        limiter = RedisConcurrencyLimiter(client, "paused", 2, lease=1, op_timeout=OP_TIMEOUT)
        async with limiter:
            limiter.release(await limiter.acquire())
            private_redis.pause()
            try:
                start = anyio.current_time()
                with pytest.raises(LimiterUnavailable, match=r"within 0\.3s"):
                    await limiter.acquire()
                assert anyio.current_time() - start <= OP_TIMEOUT + SLACK
            finally:
                private_redis.resume()


async def test_fail_open_admits_unchecked_counts_it_and_logs_once(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "towerpy.redis")
    async with open_client(private_redis.url) as client:
        bucket = RedisTokenBucket(
            client, "open", 1, burst=1, on_unavailable="allow", op_timeout=OP_TIMEOUT
        )
        limiter = RedisConcurrencyLimiter(
            client, "open", 1, lease=1, on_unavailable="allow", op_timeout=OP_TIMEOUT
        )
        async with bucket, limiter:
            private_redis.kill()
            for _ in range(3):  # a bucket of 1 token a second: only unchecked could pass
                await bucket.acquire(1)
            permits = [await limiter.acquire(), await limiter.acquire()]
            for permit in permits:
                limiter.release(permit)
            assert bucket.statistics().unchecked == 3
            assert limiter.statistics().unchecked == 2
    logs = outage_logs(caplog)
    assert len([log for log in logs if "admitting requests unchecked" in log]) == 2, logs


async def test_permits_in_use_through_a_restart_are_counted_again(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "towerpy.redis")
    async with open_client(private_redis.url) as client:
        limiter = RedisConcurrencyLimiter(client, "restart", 3, lease=1, op_timeout=0.25)
        async with limiter:
            held = [await limiter.acquire(), await limiter.acquire()]
            private_redis.kill()
            private_redis.start()  # without its data: the two permits are forgotten
            sync = private_redis.sync()
            try:
                # renewed every 0.25 s: asserted again on the next renewal that gets through
                await eventually(lambda: sync.zcard(limiter._keys[0]) == 2, within=3)
            finally:
                sync.close()
            for permit in held:
                limiter.release(permit)
    assert any("asserted again" in log for log in outage_logs(caplog))


async def test_a_retry_layer_waits_out_a_short_outage(private_redis: PrivateRedis) -> None:
    async with open_client(private_redis.url) as client:
        bucket = RedisTokenBucket(client, "retry", 100, op_timeout=OP_TIMEOUT)
        service = (
            ServiceBuilder()
            .layer(
                RetryLayer(
                    RetryPolicy(10, backoff=ConstantBackoff(0), retry_on=(LimiterUnavailable,))
                )
            )
            .layer(RateLimitLayer(limiter=bucket))
            .service(service_fn(echo))
        )
        async with bucket, anyio.create_task_group() as tg:
            private_redis.kill()

            async def come_back() -> None:
                await anyio.sleep(0.5)
                await anyio.to_thread.run_sync(private_redis.start)

            tg.start_soon(come_back)
            start = anyio.current_time()
            assert await service(1) == 1
            # it failed at least once (the server was down for 0.5 s), then waited retry_after
            assert anyio.current_time() - start >= 1.0
