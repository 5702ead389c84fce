"""Keyed limits across processes: a budget and an in-flight bound per tenant, in Redis."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import ServiceBuilder, service_fn
from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket
from towerpy.redis import keyed as keyed_module

from .support import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

SLOW = 3600.0


async def echo(request: dict[str, Any]) -> dict[str, Any]:
    return request


async def level(bucket: RedisTokenBucket) -> float:
    await bucket.try_acquire(0)
    return bucket.statistics().tokens


async def test_each_key_spends_a_budget_of_its_own_shared_by_every_process(
    client: Any, name: str
) -> None:
    bucket = RedisTokenBucket(client, name, 10, per=SLOW)
    elsewhere = RedisTokenBucket(client, name, 10, per=SLOW)  # another process's object
    service = (
        ServiceBuilder()
        .layer(
            bucket.keyed(
                lambda request: request["tenant"],
                cost=lambda request: request["estimate"],
                actual_cost=lambda request, response: response["used"],
            )
        )
        .service(service_fn(echo))
    )
    async with bucket, elsewhere:
        await service({"tenant": "acme", "estimate": 6, "used": 6})
        await service({"tenant": "acme", "estimate": 3, "used": 1})  # 2 come back
        await service({"tenant": "globex", "estimate": 1, "used": 1})

        async def settled() -> bool:
            return await level(elsewhere.for_key("acme")) == pytest.approx(3, abs=0.01)

        await eventually(settled)
        assert await level(elsewhere.for_key("globex")) == pytest.approx(9, abs=0.01)
        assert await level(elsewhere.for_key("initech")) == 10


async def test_each_key_has_its_own_in_flight_bound_in_every_process(
    client: Any, name: str
) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    release = anyio.Event()

    async def slow(request: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return request

    layer = limiter.keyed(lambda request: request["tenant"], limits={"big": 2})
    service = ServiceBuilder().layer(layer).service(service_fn(slow))
    entered: list[str] = []

    async def call(tenant: str) -> None:
        await service({"tenant": tenant})
        entered.append(tenant)

    async def holders(tenant: str) -> int:
        return int(await client.zcard(limiter.for_key(tenant)._keys[0]))

    async with limiter, anyio.create_task_group() as tg:
        for tenant in ["big", "big", "big", "small", "small"]:
            tg.start_soon(call, tenant)

        async def all_placed() -> bool:
            return (await holders("big"), await holders("small")) == (2, 1)

        await eventually(all_placed)
        assert limiter.statistics().waiting_here == 0  # the views' waiters are counted apart
        assert limiter.for_key("big", 2).statistics().waiting_here == 1
        release.set()
    assert sorted(entered) == ["big", "big", "big", "small", "small"]


async def test_a_process_keeps_only_a_bounded_number_of_per_key_services(
    client: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyed_module, "_CACHED", 8)
    bucket = RedisTokenBucket(client, name, 10, per=SLOW)
    service = bucket.keyed(lambda request: request["tenant"]).layer(service_fn(echo))
    async with bucket:
        for tenant in range(20):
            await service({"tenant": tenant})
        await service({"tenant": 12})  # recently used: kept
    assert list(service._services._services) == [13, 14, 15, 16, 17, 18, 19, 12]


def test_keyed_layers_check_their_functions_and_limits() -> None:
    import redis.asyncio

    client = redis.asyncio.Redis()
    bucket = RedisTokenBucket(client, "x", 1)
    with pytest.raises(TypeError, match="key must be a function"):
        bucket.keyed("tenant")  # type: ignore[arg-type]

    async def cost(request: object) -> float:
        return 1.0

    with pytest.raises(TypeError, match="cost must be a plain"):
        bucket.keyed(lambda r: r, cost=cost)  # type: ignore[arg-type]
    limiter = RedisConcurrencyLimiter(client, "x", 1)
    with pytest.raises(ValueError, match=r"limits\['a'\] must be >= 1"):
        limiter.keyed(lambda r: r, limits={"a": 0})
    with pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        limiter.for_key("a", 0)
