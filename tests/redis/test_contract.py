"""The Redis limiters keep the ready()/call() contract: the generic suite, on a real server.

Each factory puts a `towerpy.redis` limiter under the layer a user would (``limiter=``, or
``keyed()``), on asyncio with redis.asyncio and with coredis, and on trio with coredis. Their
capacity is in Redis and goes back through a queue that a background task sends, so the suite
settles through ``flush()`` before each look, and is bounded by seconds of the real clock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import pytest
from typing_extensions import override

from towerpy import ConcurrencyLimit, LoadShed, Middleware, RateLimit, Service, lowlevel
from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket
from towerpy.testing import ServiceContract

from .support import SHARED_URL, open_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import TracebackType

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

BOUND = 5.0  # seconds a step that must not wait may take: a few round trips, on a busy machine
SLOW = 3600.0  # a bucket's period: no token comes back during a check

Limiter = RedisConcurrencyLimiter | RedisTokenBucket


@pytest.fixture(params=["asyncio+redis.asyncio", "asyncio+coredis", "trio+coredis"])
def stack(request: pytest.FixtureRequest) -> str:
    stack: str = request.param
    return stack


@pytest.fixture
def anyio_backend(stack: str) -> str:
    return stack.partition("+")[0]  # the real clock: the plugin's options are for virtual time


@pytest.fixture
async def client(stack: str) -> AsyncIterator[Any]:
    if stack.endswith("redis.asyncio"):
        async with open_client(SHARED_URL) as asyncio_client:  # redis.asyncio on asyncio
            yield asyncio_client
    else:
        import coredis

        async with coredis.Redis.from_url(SHARED_URL) as coredis_client:
            yield coredis_client


class Running(Middleware[Any, Any]):
    """The service under test, with its Redis limiter running while the service is entered.

    A limiter may be shared by many services, so no layer enters it: whoever owns it does.
    """

    def __init__(self, inner: Service[Any, Any], limiter: Limiter) -> None:
        super().__init__(inner)
        self.limiter = limiter
        self._stack = contextlib.AsyncExitStack()

    @override
    async def call(self, request: Any) -> Any:
        return await self.inner.call(request)

    @override
    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.limiter)
            await stack.enter_async_context(self.inner)
            self._stack = stack.pop_all()
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)


async def flush(service: Service[Any, Any]) -> None:
    assert isinstance(service, Running)
    await service.limiter.flush()


@dataclass(frozen=True)
class Factory:
    """A layer over a Redis limiter: ``make(client, names, inner, capacity)``, and its profile."""

    make: Callable[[Any, Callable[[], str], Service[Any, Any], int], Service[Any, Any]]
    profile: dict[str, Any] = field(default_factory=dict)

    def contract(self, client: Any, names: Callable[[], str]) -> ServiceContract:
        return ServiceContract(
            lambda inner, n: self.make(client, names, inner, n),
            bound=BOUND,
            settle=flush,
            **self.profile,
        )


def _concurrency(client: Any, names: Callable[[], str], inner: Service[Any, Any], n: int) -> Any:
    limiter = RedisConcurrencyLimiter(client, names(), n)
    return Running(ConcurrencyLimit(inner, limiter=limiter), limiter)


def _shed_concurrency(
    client: Any, names: Callable[[], str], inner: Service[Any, Any], n: int
) -> Any:
    # acquire_nowait() cannot know (Redis must be asked): shedding asks try_acquire() instead
    limiter = RedisConcurrencyLimiter(client, names(), n)
    return Running(LoadShed(ConcurrencyLimit(inner, limiter=limiter)), limiter)


def _bucket(client: Any, names: Callable[[], str], inner: Service[Any, Any], n: int) -> Any:
    bucket = RedisTokenBucket(client, names(), n, per=SLOW * n)
    return Running(RateLimit(inner, limiter=bucket), bucket)


def _bucket_cost(client: Any, names: Callable[[], str], inner: Service[Any, Any], n: int) -> Any:
    bucket = RedisTokenBucket(client, names(), n, per=SLOW * n)
    return Running(RateLimit(inner, limiter=bucket, cost=lambda request: 1), bucket)


def _keyed_concurrency(
    client: Any, names: Callable[[], str], inner: Service[Any, Any], n: int
) -> Any:
    limiter = RedisConcurrencyLimiter(client, names(), 10)  # the key's own limit is n
    return Running(limiter.keyed(lambda request: "k", {"k": n}).layer(inner), limiter)


def _keyed_bucket(client: Any, names: Callable[[], str], inner: Service[Any, Any], n: int) -> Any:
    bucket = RedisTokenBucket(client, names(), n, per=SLOW * n)
    return Running(bucket.keyed(lambda request: "k").layer(inner), bucket)


FACTORIES: dict[str, Factory] = {
    "RedisConcurrencyLimiter": Factory(_concurrency),
    "LoadShed(RedisConcurrencyLimiter)": Factory(_shed_concurrency, {"sheds": True}),
    "RedisTokenBucket": Factory(_bucket, {"capacity_returns": False}),
    "RedisTokenBucket(cost=)": Factory(
        _bucket_cost, {"ready_reserves": False, "capacity_returns": False}
    ),
    "RedisConcurrencyLimiter.keyed": Factory(_keyed_concurrency, {"ready_reserves": False}),
    "RedisTokenBucket.keyed": Factory(
        _keyed_bucket, {"ready_reserves": False, "capacity_returns": False}
    ),
}

CASES = [
    pytest.param(name, check, id=f"{name}-{check}")
    for name, factory in FACTORIES.items()
    for check in ServiceContract(lambda inner, n: inner, **factory.profile).checks()
]


@pytest.mark.parametrize(("factory", "check"), CASES)
async def test_every_redis_limit_keeps_the_contract(
    factory: str, check: str, client: Any, names: Callable[[], str]
) -> None:
    await FACTORIES[factory].contract(client, names).check(check)


class Impatient(Middleware[Any, Any], direct_call=True):
    """A broken Redis-backed limit: a call that finds no permit free goes in all the same.

    Its call asks Redis first (a round trip), so it looks like a waiting call to a test that
    only waits for every task to block.
    """

    def __init__(self, inner: Service[Any, Any], limiter: RedisConcurrencyLimiter) -> None:
        super().__init__(inner)
        self.limiter = limiter

    @override
    async def ready(self) -> None:
        limiter = self.limiter
        await lowlevel.reserve(self, limiter.acquire, limiter.release, self.inner)

    @override
    async def try_ready(self) -> bool:
        limiter = self.limiter
        return await lowlevel.try_reserve(self, limiter.try_acquire, limiter.release, self.inner)

    @override
    async def call(self, request: Any) -> Any:
        reservation = lowlevel.take(self)
        permit = reservation.token if reservation else await self.limiter.try_acquire()
        try:
            return await self.inner(request)
        finally:
            if permit is not None:
                self.limiter.release(permit)


async def test_the_suite_catches_a_redis_limit_whose_calls_do_not_wait(
    client: Any, names: Callable[[], str]
) -> None:
    def make(inner: Service[Any, Any], n: int) -> Service[Any, Any]:
        limiter = RedisConcurrencyLimiter(client, names(), n)
        return Running(Impatient(inner, limiter), limiter)

    contract = ServiceContract(make, bound=BOUND, settle=flush)
    with pytest.raises(ExceptionGroup) as caught:  # raised in the check's task group
        await contract.check("a_call_alone_waits_for_capacity")
    assert caught.group_contains(AssertionError, match="a call did not wait for capacity")
