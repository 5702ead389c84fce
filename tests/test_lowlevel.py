"""towerpy.lowlevel: the layer author's API, and the reservation rules it gives every layer."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import anyio
import pytest
import sniffio
from typing_extensions import override

from towerpy import (
    ConcurrencyLimit,
    KeyedConcurrencyLimit,
    MapRequest,
    Middleware,
    RateLimit,
    RequestTooLarge,
    Service,
    lowlevel,
    service_fn,
)
from towerpy.testing import mock_service, wait_all_tasks_blocked
from towerpy.tools import Tool, tool

pytestmark = pytest.mark.anyio


async def echo(x: Any) -> Any:
    return x


def native_task() -> object:
    if sniffio.current_async_library() == "trio":
        return sys.modules["trio"].lowlevel.current_task()
    return asyncio.current_task()


async def test_a_reservation_comes_back_when_its_task_ends_though_it_is_still_referenced() -> None:
    limit = ConcurrencyLimit(service_fn(echo), 1)
    kept: list[object] = []  # as asyncio's docs ask: keep a reference to every task

    async def reserve_and_leave() -> None:
        kept.append(native_task())
        await limit.ready()

    gc.disable()  # the task object stays alive: only the end of the task can give it back
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reserve_and_leave)
        await wait_all_tasks_blocked()
        assert kept
        assert limit.statistics().in_flight == 0
        assert await limit.try_ready()
    finally:
        gc.enable()


async def test_a_waiter_gets_the_permit_of_a_referenced_task_that_ended_without_calling() -> None:
    limit = ConcurrencyLimit(service_fn(echo), 1)
    kept: list[object] = []
    results: list[str] = []

    async def reserve_and_leave() -> None:
        kept.append(native_task())
        await limit.ready()

    async def waiter() -> None:
        results.append(await limit.call("late"))

    gc.disable()
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reserve_and_leave)
                await wait_all_tasks_blocked()
                tg.start_soon(waiter)
    finally:
        gc.enable()
    assert results == ["late"]


class Refuses(Middleware[str, str]):
    """A circuit-breaker-like layer: refuses without calling through, giving the capacity back."""

    @override
    async def call(self, request: str) -> str:
        self.inner.drop_reservation()
        raise RuntimeError("open")


class RefusesAndForgets(Middleware[str, str]):
    @override
    async def call(self, request: str) -> str:
        raise RuntimeError("open")


async def test_a_layer_that_refuses_gives_the_reservation_below_back_with_drop_reservation() -> (
    None
):
    limit = ConcurrencyLimit(service_fn(echo), 1)
    svc = Refuses(limit)
    await svc.ready()
    assert limit.statistics().in_flight == 1
    with pytest.raises(RuntimeError, match="open"):
        await svc.call("x")
    assert limit.statistics().in_flight == 0  # at once, not when this task ends


async def test_a_failed_service_call_gives_back_what_its_ready_reserved() -> None:
    limit = ConcurrencyLimit(service_fn(echo), 1)
    svc = RefusesAndForgets(limit)
    with pytest.raises(RuntimeError, match="open"):
        await svc("x")  # ready() then call(): the call failed before using the reservation
    assert limit.statistics().in_flight == 0


async def test_drop_reservation_reaches_every_limit_of_a_stack() -> None:
    concurrency = ConcurrencyLimit(service_fn(echo), 1)
    rate = RateLimit(concurrency, 2, burst=2)
    await rate.ready()
    assert (rate.statistics().tokens, concurrency.statistics().in_flight) == (1, 1)
    rate.drop_reservation()
    assert (rate.statistics().tokens, concurrency.statistics().in_flight) == (2, 0)
    rate.drop_reservation()  # nothing held: nothing happens
    assert concurrency.statistics().in_flight == 0


async def test_drop_reservation_leaves_other_tasks_reservations_alone() -> None:
    limit = ConcurrencyLimit(service_fn(echo), 2)
    await limit.ready()

    async def other() -> None:
        limit.drop_reservation()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
    assert limit.statistics().in_flight == 1
    assert await limit.call("mine") == "mine"


def _raises(request: Any) -> Any:
    raise LookupError("bad request")


@pytest.mark.parametrize("layer", ["map_request", "rate_cost", "rate_too_large", "keyed", "tool"])
async def test_a_built_in_layer_that_fails_before_its_inner_call_frees_the_inner_reservation(
    layer: str,
) -> None:
    limit = ConcurrencyLimit(service_fn(echo), 1)
    svc: Service[Any, Any]
    if layer == "map_request":
        svc = MapRequest(limit, _raises)
    elif layer == "rate_cost":
        svc = RateLimit(limit, 10, cost=_raises)
    elif layer == "rate_too_large":
        svc = RateLimit(limit, 10, cost=lambda request: 100)
    elif layer == "keyed":
        svc = KeyedConcurrencyLimit(limit, _raises, {})
    else:

        @tool(concurrency_limit=1)
        async def lookup(city: str) -> str:
            """Looks a city up."""
            return city

        svc = lookup
        limit = None  # type: ignore[assignment]
    await svc.ready()
    with pytest.raises((LookupError, RequestTooLarge, Exception)):
        await svc.call({"town": 1} if layer == "tool" else "x")  # type: ignore[arg-type]
    if isinstance(svc, Tool):
        assert await svc.try_ready()  # the tool's own permit is free again
    else:
        assert limit.statistics().in_flight == 0


async def test_take_or_acquire_uses_the_reservation_then_acquires() -> None:
    acquired: list[str] = []

    async def acquire() -> str:
        acquired.append("waited")
        return "fresh"

    released: list[str] = []
    await lowlevel.reserve("key", acquire, released.append)
    assert lowlevel.held("key") is not None
    assert await lowlevel.take_or_acquire("key", acquire) == "fresh"
    assert acquired == ["waited"]  # the reservation's: no second acquire
    assert await lowlevel.take_or_acquire("key", acquire, lambda: "nowait") == "nowait"
    assert await lowlevel.take_or_acquire("key", acquire) == "fresh"
    assert acquired == ["waited", "waited"]
    assert released == []


async def test_shedding_refuses_a_wait_on_its_keys_only_and_only_in_its_task() -> None:
    async def acquire() -> str:
        return "waited"

    async def try_nothing() -> str | None:
        return None

    async def try_free() -> str | None:  # a remote backend: no local answer, but capacity
        return "free"

    with lowlevel.shedding(frozenset({id("mine")})):
        with pytest.raises(lowlevel.Shed, match="overloaded"):
            await lowlevel.take_or_acquire("mine", acquire)
        assert lowlevel.take_or_acquire_nowait("mine", lambda: None) is None
        with pytest.raises(lowlevel.Shed):
            await lowlevel.wait_for_capacity("mine", acquire)
        with pytest.raises(lowlevel.Shed):
            await lowlevel.wait_for_capacity("mine", acquire, try_nothing)
        assert await lowlevel.wait_for_capacity("mine", acquire, try_free) == "free"
        assert lowlevel.take_or_acquire_nowait("mine", lambda: "free") == "free"
        assert await lowlevel.take_or_acquire("other", acquire) == "waited"
        child: list[str] = []

        async def in_child() -> None:
            child.append(await lowlevel.take_or_acquire("mine", acquire))

        async with anyio.create_task_group() as tg:
            tg.start_soon(in_child)
        assert child == ["waited"]
    assert await lowlevel.take_or_acquire("mine", acquire) == "waited"


async def test_a_cancelled_waiter_of_the_wait_queue_leaves_in_order() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    order: list[int] = []

    async def caller(n: int) -> None:
        await limit(n)
        order.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, 0)
        _, first = await handle.next_request()
        scopes = []
        for n in range(1, 200):
            scope = anyio.CancelScope()
            scopes.append(scope)

            async def run(n: int = n, scope: anyio.CancelScope = scope) -> None:
                with scope:
                    await caller(n)

            tg.start_soon(run)
            await wait_all_tasks_blocked()
        for n, scope in enumerate(scopes, start=1):
            if n % 3:
                scope.cancel()  # two in three leave before their turn
        await wait_all_tasks_blocked()
        assert limit.statistics().waiting == 66
        first.send(None)
        while len(order) < 67:
            _, responder = await handle.next_request()
            responder.send(None)
            await wait_all_tasks_blocked()
    assert order == [0, *range(3, 200, 3)]
    assert limit.statistics() == type(limit.statistics())(1, 0, 0)
