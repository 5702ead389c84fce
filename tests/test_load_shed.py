from __future__ import annotations

from typing import Any

import anyio
import pytest
from typing_extensions import override

from towerpy import (
    ConcurrencyLimit,
    ConstantBackoff,
    KeyedConcurrencyLimit,
    LoadShed,
    LoadShedLayer,
    LoadShedStatistics,
    Middleware,
    Overloaded,
    RateLimit,
    Retry,
    RetryPolicy,
    ServiceBuilder,
    lowlevel,
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
    assert lowlevel.held(inner) is None
    handle.allow(1)
    await svc.ready()
    assert lowlevel.held(inner) is not None
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


async def test_over_a_cost_rate_limit_a_request_the_bucket_cannot_pay_is_shed() -> None:
    rate = RateLimit(service_fn(echo), 10, burst=10, cost=lambda request: request)
    svc = LoadShed(rate)
    start = anyio.current_time()
    assert await svc(8) == 8
    with pytest.raises(Overloaded, match="not ready"):
        await svc(5)  # 2 tokens left: it would have waited
    assert anyio.current_time() == start
    assert rate.statistics().tokens == pytest.approx(2)  # the refused request took nothing
    assert await svc(2) == 2
    assert svc.statistics().shed == 1


async def test_over_a_keyed_limit_a_busy_key_is_shed_and_others_pass() -> None:
    inner, handle = mock_service()
    keyed = KeyedConcurrencyLimit(inner, key=lambda request: request[0], limits={}, default=1)
    svc = LoadShed(keyed)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "a1")
        _, first = await handle.next_request()
        with pytest.raises(Overloaded):
            await svc("a2")
        tg.start_soon(svc, "b1")
        request, second = await handle.next_request()
        assert request == "b1"
        second.send(None)
        first.send(None)
    assert keyed.statistics().in_flight == 0
    assert svc.statistics().shed == 1


async def test_tokens_taken_for_a_request_refused_further_in_are_given_back() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    rate = RateLimit(limit, 1, burst=3)
    svc = LoadShed(rate)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        _, first = await handle.next_request()
        assert rate.statistics().tokens == 2
        with pytest.raises(Overloaded):
            await svc("second")  # a token is there, the permit is not
        assert rate.statistics().tokens == 2
        assert limit.statistics().in_flight == 1
        first.send(None)


async def test_a_retry_below_the_shedder_does_not_retry_the_refusal() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    retry = Retry(limit, RetryPolicy(max_attempts=5, backoff=ConstantBackoff(1.0)))
    svc = LoadShed(retry)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        _, first = await handle.next_request()
        start = anyio.current_time()
        with pytest.raises(Overloaded):
            await svc("second")
        assert anyio.current_time() == start  # no backoff slept through
        first.send(None)


async def test_shedding_does_not_reach_limits_inside_the_service_it_protects() -> None:
    # an agent-like service: it waits for a limit of its own while it works
    inner, handle = mock_service()
    own_limit = ConcurrencyLimit(inner, 1)

    async def work(request: str) -> str:
        return str(await own_limit(request))

    svc = LoadShed(service_fn(work))
    async with anyio.create_task_group() as tg:
        tg.start_soon(own_limit, "busy")
        _, busy = await handle.next_request()
        results: list[str] = []

        async def shed_caller() -> None:
            results.append(await svc("mine"))

        tg.start_soon(shed_caller)
        await wait_all_tasks_blocked()
        assert own_limit.statistics().waiting == 1  # it waits, it is not shed
        busy.send(None)
        _, mine = await handle.next_request()
        mine.send("done")
    assert results == ["done"]


async def test_over_a_layer_of_ones_own_it_checks_readiness_first() -> None:
    class Passthrough(Middleware[Any, Any]):
        @override
        async def call(self, request: Any) -> Any:
            return await self.inner(request)

    inner, handle = mock_service()
    handle.allow(0)
    svc = LoadShed(Passthrough(inner))
    with pytest.raises(Overloaded):
        await svc("x")
    assert handle.pending == 0
