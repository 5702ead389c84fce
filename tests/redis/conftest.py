"""A real Redis for every test here: the shared one for most, a private one for fault tests.

The shared server is ``TOWERPY_REDIS_URL`` (``.ci/run`` sets it), else 127.0.0.1:6379. Tests
never flush it: each uses names of its own (the ``names`` fixture), and checks afterwards that
every key under them has a TTL, then deletes them. A test that stops, restarts or pauses Redis
starts a private ``redis-server --save ""`` on a free port (the ``private_redis`` fixture).

Every test here talks to a real server, so it runs on the real clock (``real_clock``): a
virtual clock would jump past ``op_timeout`` while a reply is on its way.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from .support import SHARED_URL, PrivateRedis, leftover_keys_without_ttl, open_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator


@pytest.fixture
def redis_url() -> str:
    return SHARED_URL


@pytest.fixture
def names() -> Iterator[Callable[[], str]]:
    """Makes limiter names unique to this test; afterwards, every key under them has a TTL."""
    made: list[str] = []

    def make() -> str:
        made.append(f"towerpy-test-{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    assert leftover_keys_without_ttl(SHARED_URL, made) == []


@pytest.fixture
def name(names: Callable[[], str]) -> str:
    return names()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    async with open_client(redis_url) as client:
        yield client


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[PrivateRedis]:
    server = PrivateRedis(str(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.kill()
