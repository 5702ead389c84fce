"""Which clients a Redis limiter takes, and what it says about the ones it cannot drive."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio
import trio

import redis
from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket

from .support import SHARED_URL, eventually


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # coredis on asyncio; trio is every other module's second backend


def test_on_trio_a_redis_asyncio_client_is_refused_saying_what_to_install() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=r"on trio pass a coredis client.*towerpy\[coredis\]"):
            RedisTokenBucket(redis.asyncio.Redis(), "x", 1)

    trio.run(main)


def test_a_limiter_made_before_trio_started_is_refused_when_entered() -> None:
    limiter = RedisConcurrencyLimiter(redis.asyncio.Redis(), "x", 1)  # no loop runs yet

    async def main() -> None:
        with pytest.raises(TypeError, match="runs on asyncio only"):
            async with limiter:
                pass

    trio.run(main)


def test_a_synchronous_or_unknown_client_is_refused_naming_what_it_needs() -> None:
    with pytest.raises(TypeError, match=r"needs an asyncio client: redis\.asyncio\.Redis"):
        RedisTokenBucket(redis.Redis(), "x", 1)
    with pytest.raises(TypeError, match=r"pip install 'towerpy\[redis\]'"):
        RedisConcurrencyLimiter(object(), "x", 1)


def test_a_client_library_older_than_supported_is_refused_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis, "__version__", "4.6.0")
    with pytest.raises(ImportError, match=r"needs redis>=5, found 4\.6\.0.*towerpy\[redis\]"):
        RedisTokenBucket(redis.asyncio.Redis(), "x", 1)


@pytest.mark.anyio
@pytest.mark.real_clock
async def test_coredis_drives_a_limiter_on_asyncio_too(names: Any) -> None:
    import coredis

    async with coredis.Redis.from_url(SHARED_URL) as client:
        bucket = RedisTokenBucket(client, names(), 10, burst=1)
        limiter = RedisConcurrencyLimiter(client, names(), 1)
        async with bucket, limiter:
            await bucket.acquire(1)
            await bucket.acquire(1)  # waits 0.1 s for its token, woken by a message
            permit = await limiter.acquire()
            async with anyio.create_task_group() as tg:
                tg.start_soon(limiter.acquire)
                await eventually(lambda: limiter.statistics().waiting_here == 1)
                limiter.release(permit)
