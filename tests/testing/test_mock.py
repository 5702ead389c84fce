from __future__ import annotations

import math

import anyio
import pytest

from towerpy import Overloaded, ServiceBuilder
from towerpy.testing import mock_service, wait_all_tasks_blocked

from ..reference import ReferenceLimit

pytestmark = pytest.mark.anyio


async def test_requests_arrive_in_order_and_are_answered_by_hand() -> None:
    svc, handle = mock_service()
    results: dict[str, object] = {}

    async def caller(x: str) -> None:
        results[x] = await svc(x)

    async with anyio.create_task_group() as tg:
        for x in ("a", "b"):
            tg.start_soon(caller, x)
            await wait_all_tasks_blocked()
        first, r1 = await handle.next_request()
        second, r2 = await handle.next_request()
        assert (first, second) == ("a", "b")
        r2.send("B")
        r1.send("A")
    assert results == {"a": "A", "b": "B"}


async def test_fail_makes_the_call_raise() -> None:
    svc, handle = mock_service()
    async with anyio.create_task_group() as tg:

        async def caller() -> None:
            with pytest.raises(KeyError, match="nope"):
                await svc("x")

        tg.start_soon(caller)
        _, responder = await handle.next_request()
        responder.fail(KeyError("nope"))


async def test_a_request_cannot_be_answered_twice() -> None:
    svc, handle = mock_service()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "x")
        _, responder = await handle.next_request()
        responder.send(1)
        assert responder.answered
        with pytest.raises(RuntimeError, match="already answered"):
            responder.send(2)
        with pytest.raises(RuntimeError, match="already answered"):
            responder.fail(ValueError())


async def test_fail_needs_an_exception() -> None:
    svc, handle = mock_service()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "x")
        _, responder = await handle.next_request()
        with pytest.raises(TypeError, match="exc must be an exception, got str"):
            responder.fail("boom")  # type: ignore[arg-type]
        responder.send(None)


async def test_allow_zero_holds_the_service_not_ready() -> None:
    svc, handle = mock_service()
    handle.allow(0)
    assert not await svc.try_ready()
    became_ready = anyio.Event()
    leave = anyio.Event()

    async def waiter() -> None:
        await svc.ready()
        became_ready.set()
        await leave.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert not became_ready.is_set()
        handle.allow(1)
        await became_ready.wait()
        assert handle.allowed == 0
        leave.set()
    await wait_all_tasks_blocked()
    assert handle.allowed == 1  # the waiter ended without calling: its allowance came back


async def test_allow_counts_calls_and_replaces_the_previous_count() -> None:
    svc, handle = mock_service()
    assert handle.allowed == math.inf
    handle.allow(5)
    handle.allow(2)
    assert handle.allowed == 2
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(svc, i)
        await wait_all_tasks_blocked()
        assert handle.pending == 2  # the third call waits for readiness
        assert handle.allowed == 0
        handle.allow(None)
        for _ in range(3):
            _, responder = await handle.next_request()
            responder.send(None)
    with pytest.raises(ValueError, match=">= 0"):
        handle.allow(-1)


async def test_an_unused_reservation_gives_its_allowance_back() -> None:
    svc, handle = mock_service()
    handle.allow(1)

    async def reserve_and_leave() -> None:
        await svc.ready()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserve_and_leave)
    await wait_all_tasks_blocked()
    assert handle.allowed == 1


async def test_a_cancelled_caller_is_visible_to_the_test() -> None:
    svc, handle = mock_service()
    with anyio.move_on_after(1):
        await svc("x")
    _, responder = await handle.next_request()
    assert responder.cancelled
    responder.send("too late")  # a caller that left is not an error


async def test_try_next_request_does_not_wait() -> None:
    svc, handle = mock_service()
    assert handle.try_next_request() is None
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "x")
        await wait_all_tasks_blocked()
        item = handle.try_next_request()
        assert item is not None
        item[1].send(None)


async def test_driving_a_layer_step_by_step() -> None:
    # a limit of 1 over a mock: the test sees exactly what the limit lets through, and when
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)
    svc = ServiceBuilder().map_request(str.upper).service(limit)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "one")
        await wait_all_tasks_blocked()
        tg.start_soon(svc, "two")
        await wait_all_tasks_blocked()
        assert handle.pending == 1
        request, responder = await handle.next_request()
        assert request == "ONE"
        assert handle.pending == 0
        responder.send(None)
        request, responder = await handle.next_request()
        assert request == "TWO"
        responder.send(None)
    assert limit.in_use == 0


async def test_mock_readiness_drives_what_a_shedding_layer_does() -> None:
    inner, handle = mock_service()
    handle.allow(0)

    async def shed_or_call(x: str) -> object:
        if not await inner.try_ready():
            raise Overloaded("inner not ready")
        return await inner.call(x)

    with pytest.raises(Overloaded):
        await shed_or_call("x")
    handle.allow(1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(shed_or_call, "y")
        request, responder = await handle.next_request()
        assert request == "y"
        responder.send(None)
    assert handle.allowed == 0
