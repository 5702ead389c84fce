from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import (
    ConcurrencyLimit,
    LoadShed,
    LoadShedLayer,
    LoadShedStatistics,
    Overloaded,
    RateLimit,
    ServiceBuilder,
    _reserve,
    service_fn,
)
from towerpy.testing import mock_service, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def echo(x: Any) -> Any:
    return x


async def test_a_request_is_refused_at_once_when_the_inner_service_is_not_ready() -> None:
    inner, handle = mock_service()
    svc = LoadShed(inner)
    handle.allow(0)
    start = anyio.current_time()
    with pytest.raises(Overloaded, match="the inner service is not ready"):
        await svc("x")
    assert anyio.current_time() == start
    assert handle.pending == 0  # nothing reached the inner service
    assert handle.allowed == 0
    assert svc.statistics() == LoadShedStatistics(shed=1)


async def test_a_request_passes_when_the_inner_service_is_ready() -> None:
    inner, handle = mock_service()
    svc = LoadShed(inner)
    handle.allow(1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "x")
        request, responder = await handle.next_request()
        assert request == "x"
        responder.send(None)
    assert handle.allowed == 0  # one allowance, used once
    assert svc.statistics().shed == 0


async def test_over_a_concurrency_limit_the_overflow_is_shed_not_queued() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    svc = LoadShed(limit)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        _, first = await handle.next_request()
        with pytest.raises(Overloaded):
            await svc("second")
        assert limit.statistics().in_flight == 1
        first.send(None)
        await wait_all_tasks_blocked()
        tg.start_soon(svc, "third")
        request, responder = await handle.next_request()
        assert request == "third"
        responder.send(None)
    assert limit.statistics().in_flight == 0
    assert svc.statistics().shed == 1


async def test_over_a_rate_limit_an_empty_bucket_sheds() -> None:
    rate = RateLimit(service_fn(echo), 1, burst=2)
    svc = LoadShed(rate)
    assert await svc(1) == 1
    assert await svc(2) == 2
    with pytest.raises(Overloaded):
        await svc(3)
    await anyio.sleep(1)
    assert await svc(4) == 4
    assert rate.statistics().tokens == 0


async def test_ready_never_waits_and_reserves_when_it_can() -> None:
    inner, handle = mock_service()
    svc = LoadShed(inner)
    handle.allow(0)
    start = anyio.current_time()
    await svc.ready()
    assert await svc.try_ready()
    assert anyio.current_time() == start
    assert _reserve.held(inner) is None
    handle.allow(1)
    await svc.ready()
    assert _reserve.held(inner) is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(answer, handle)
        await svc.call("uses the reservation")
    assert handle.allowed == 0


async def answer(handle: Any) -> None:
    _, responder = await handle.next_request()
    responder.send(None)


async def test_the_builder_shorthand_is_the_layer() -> None:
    builder = ServiceBuilder().load_shed().concurrency_limit(1)
    layer = builder.layers[0]
    assert isinstance(layer, LoadShedLayer)
    svc = builder.service(service_fn(echo))
    assert isinstance(svc, LoadShed)
    assert await svc("x") == "x"
    assert repr(layer) == "LoadShedLayer()"
