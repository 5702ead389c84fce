"""One 429 pauses a whole fleet: ProviderQuotaLayer over RedisTokenBucket, on a real server.

Real clock (Redis is real): the buckets refill a few tokens an hour, so the levels checked do not
move while a test runs. Two layers over two bucket objects of one name stand for two processes.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from towerpy.errors import RateLimited
from towerpy.llm import ChatRequest, Message, ProviderQuotaLayer
from towerpy.redis import RedisTokenBucket
from towerpy.testing import mock_service

from ..redis.support import SHARED_URL, eventually, leftover_keys_without_ttl, open_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

PER = 3600.0  # 100 tokens an hour: about one every 36 s, nothing during a test
PAUSE = 3600.0  # a 429's retry_after: an hour, 100 tokens of refill


@pytest.fixture
def name() -> Iterator[str]:
    made = f"towerpy-test-{uuid.uuid4().hex[:12]}"
    yield made
    assert leftover_keys_without_ttl(SHARED_URL, [made]) == []


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    async with open_client(SHARED_URL) as client:
        yield client


async def level(bucket: RedisTokenBucket) -> float:
    await bucket.try_acquire(0)  # a fresh look: the level as Redis says, now
    return bucket.statistics().tokens


def rate_limited() -> RateLimited:
    return RateLimited("HTTP 429", retry_after=PAUSE, retryable=True)


async def fail_quietly(service: Any, errors: list[BaseException]) -> None:
    try:
        await service(ChatRequest(messages=[Message.user("hi")]))
    except RateLimited as exc:
        errors.append(exc)


async def settled_level(client: Any, name: str) -> float:
    """The level once every queued charge has reached Redis, read by a fresh object."""
    async with RedisTokenBucket(client, name, 100, per=PER) as reader:
        return await level(reader)


async def test_a_429_in_one_process_empties_the_budget_of_every_process(
    client: Any, name: str
) -> None:
    bucket_a = RedisTokenBucket(client, name, 100, per=PER)
    bucket_b = RedisTokenBucket(client, name, 100, per=PER)  # another process's object
    inner, handle = mock_service()
    a = ProviderQuotaLayer(bucket_a, max_pause=PAUSE).layer(inner)
    errors: list[BaseException] = []
    async with bucket_a, bucket_b:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fail_quietly, a, errors)
            _, responder = await handle.next_request()
            responder.fail(rate_limited())
        assert len(errors) == 1  # the error still propagates
        # 99 tokens were left: the layer charged them plus the pause's refill (100), which the
        # other process's object sees once the charge has been sent
        await eventually(lambda: _below(bucket_b, -99.5))
        assert a.statistics().pause_left == pytest.approx(PAUSE, abs=5.0)
    assert await settled_level(client, name) == pytest.approx(-100, abs=0.5)


async def test_a_second_process_meeting_the_same_storm_does_not_double_the_pause(
    client: Any, name: str
) -> None:
    bucket_a = RedisTokenBucket(client, name, 100, per=PER)
    bucket_b = RedisTokenBucket(client, name, 100, per=PER)
    inner_a, handle_a = mock_service()
    inner_b, handle_b = mock_service()
    a = ProviderQuotaLayer(bucket_a, max_pause=PAUSE).layer(inner_a)
    b = ProviderQuotaLayer(bucket_b, max_pause=PAUSE).layer(inner_b)
    watcher = RedisTokenBucket(client, name, 100, per=PER)  # looks without touching b's view
    errors_a: list[BaseException] = []
    errors_b: list[BaseException] = []
    async with bucket_a, bucket_b, watcher, anyio.create_task_group() as tg:
        # both calls are in flight (98 tokens left) when the provider refuses them both
        tg.start_soon(fail_quietly, a, errors_a)
        tg.start_soon(fail_quietly, b, errors_b)
        _, responder_a = await handle_a.next_request()
        _, responder_b = await handle_b.next_request()
        responder_a.fail(rate_limited())
        await eventually(lambda: _below(watcher, -99.5))  # a's pause has reached Redis
        # b's last look at the budget (98) is from before a's pause: it looks afresh, and
        # charges only what its own pause adds to a's (nothing: both end an hour from now)
        responder_b.fail(rate_limited())
        await eventually(lambda: len(errors_b) == 1)
    assert (len(errors_a), b.statistics().rate_limited) == (1, 1)
    # leaving the buckets' blocks sent whatever b queued: the pause was charged once
    assert await settled_level(client, name) == pytest.approx(-100, abs=0.5)


async def _below(bucket: RedisTokenBucket, tokens: float) -> bool:
    return await level(bucket) < tokens
