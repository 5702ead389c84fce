from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import (
    ConcurrencyStatistics,
    Elapsed,
    KeyedConcurrencyLimit,
    KeyedConcurrencyLimitLayer,
    ServiceBuilder,
    TimeoutLayer,
    service_fn,
)
from towerpy.testing import mock_service, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


def first(request: Any) -> str:
    return str(request[0])


def idle(svc: KeyedConcurrencyLimit[Any, Any]) -> bool:
    stats = svc.statistics()
    return (stats.in_flight, stats.waiting) == (0, 0)


async def test_a_busy_key_never_delays_another() -> None:
    inner, handle = mock_service()
    svc = KeyedConcurrencyLimit(inner, first, {"a": 1, "b": 1})
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, ("a", 1))
        await wait_all_tasks_blocked()
        tg.start_soon(svc, ("a", 2))
        await wait_all_tasks_blocked()
        tg.start_soon(svc, ("b", 1))
        await wait_all_tasks_blocked()
        assert handle.pending == 2  # a1 and b1 run; a2 waits for a1
        stats = svc.statistics()
        assert stats.keys == {
            "a": ConcurrencyStatistics(1, 1, 1),
            "b": ConcurrencyStatistics(1, 1, 0),
        }
        assert (stats.in_flight, stats.waiting) == (2, 1)
        received = []
        for _ in range(3):
            request, responder = await handle.next_request()
            received.append(request)
            responder.send(None)
    assert received == [("a", 1), ("b", 1), ("a", 2)]
    assert idle(svc)


async def test_each_key_has_its_own_limit_and_waiters_go_in_order() -> None:
    inner, handle = mock_service()
    svc = KeyedConcurrencyLimit(inner, first, {"a": 2})
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(svc, ("a", i))
            await wait_all_tasks_blocked()
        assert handle.pending == 2
        received = []
        for _ in range(5):
            request, responder = await handle.next_request()
            received.append(request[1])
            responder.send(None)
            await wait_all_tasks_blocked()  # the next waiter reaches the inner service
    assert received == [0, 1, 2, 3, 4]
    assert idle(svc)


async def test_keys_without_a_limit_are_unlimited_when_there_is_no_default() -> None:
    inner, handle = mock_service()
    svc = KeyedConcurrencyLimit(inner, first, {"a": 1})
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(svc, ("other", i))
        await wait_all_tasks_blocked()
        assert handle.pending == 4
        for _ in range(4):
            _, responder = await handle.next_request()
            responder.send(None)
    assert set(svc.statistics().keys) == {"a"}


async def test_the_default_limits_every_other_key_on_its_own() -> None:
    inner, handle = mock_service()
    svc = KeyedConcurrencyLimit(inner, first, {}, default=1)
    async with anyio.create_task_group() as tg:
        for key in ["x", "x", "y", "y"]:
            tg.start_soon(svc, (key, None))
            await wait_all_tasks_blocked()
        assert handle.pending == 2  # one x, one y
        assert svc.statistics().keys == {
            "x": ConcurrencyStatistics(1, 1, 1),
            "y": ConcurrencyStatistics(1, 1, 1),
        }
        for _ in range(4):
            _, responder = await handle.next_request()
            responder.send(None)
    # keys known only through the default are forgotten once idle: one per tenant stays bounded
    assert svc.statistics().keys == {}


async def test_ready_reserves_nothing_and_forwards_the_inner_readiness() -> None:
    inner, handle = mock_service()
    svc = KeyedConcurrencyLimit(inner, first, {"a": 1})
    handle.allow(0)
    assert not await svc.try_ready()
    handle.allow(1)
    await svc.ready()
    assert handle.allowed == 0  # the inner service's reservation
    assert idle(svc)


@pytest.mark.parametrize(
    "leave", ["return", "raise", "cancel_waiting", "cancel_running", "timeout"]
)
@pytest.mark.parametrize("limits", [{"a": 1}, {}])
async def test_every_way_of_leaving_gives_the_permit_back(
    leave: str, limits: dict[str, int]
) -> None:
    inner, handle = mock_service()
    svc = KeyedConcurrencyLimit(inner, first, limits, default=1)
    timed = TimeoutLayer(5).layer(svc)
    scope = anyio.CancelScope()
    outcomes: list[str] = []

    async def second() -> None:
        with scope:
            try:
                await (timed if leave == "timeout" else svc)(("a", 2))
            except ValueError:
                outcomes.append("raised")
            except Elapsed:
                outcomes.append("elapsed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, ("a", 1))
        _, holder = await handle.next_request()
        tg.start_soon(second)
        await wait_all_tasks_blocked()
        if leave == "cancel_waiting":
            scope.cancel()
            await wait_all_tasks_blocked()
        holder.send(None)
        if leave != "cancel_waiting":
            _, responder = await handle.next_request()
            if leave == "return":
                responder.send(None)
            elif leave == "raise":
                responder.fail(ValueError("boom"))
            elif leave == "cancel_running":
                scope.cancel()
    assert idle(svc)
    assert set(svc.statistics().keys) == set(limits)
    assert outcomes == {"raise": ["raised"], "timeout": ["elapsed"]}.get(leave, [])


@settings(deadline=None, max_examples=50)
@given(
    calls=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 4), st.integers(0, 4), st.booleans()),
        min_size=1,
        max_size=16,
    ),
)
async def test_no_key_ever_has_more_in_flight_than_its_limit(
    calls: list[tuple[str, int, int, bool]],
) -> None:
    limits = {"a": 1, "b": 2}
    default = 3  # for "c"
    running: defaultdict[str, int] = defaultdict(int)
    peak: defaultdict[str, int] = defaultdict(int)

    async def work(request: tuple[str, int, bool]) -> None:
        key, latency, _ = request
        running[key] += 1
        peak[key] = max(peak[key], running[key])
        try:
            await anyio.sleep(latency)
        finally:
            running[key] -= 1

    svc = KeyedConcurrencyLimit(service_fn(work), first, limits, default=default)
    start = anyio.current_time()

    async def client(key: str, arrival: int, latency: int, cancel: bool) -> None:
        await anyio.sleep_until(start + arrival)
        with anyio.move_on_after(1 if cancel else 100):
            await svc((key, latency, cancel))

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(client, *call)
    for key, most in peak.items():
        assert most <= limits.get(key, default)
    assert idle(svc)


def test_bad_limits_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"limits\['a'\] must be >= 1, got 0"):
        KeyedConcurrencyLimitLayer(first, {"a": 0})
    with pytest.raises(TypeError, match=r"limits\['a'\] must be an int"):
        KeyedConcurrencyLimitLayer(first, {"a": 1.5})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="default must be >= 1, got 0"):
        KeyedConcurrencyLimitLayer(first, {}, default=0)
    with pytest.raises(TypeError, match="key must be a function"):
        KeyedConcurrencyLimitLayer("name", {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limits must be a mapping"):
        KeyedConcurrencyLimitLayer(first, [("a", 1)])  # type: ignore[arg-type]


async def test_the_layer_gives_each_service_its_own_counts() -> None:
    layer = KeyedConcurrencyLimitLayer(first, {"a": 1})
    one, other = layer.layer(service_fn(hold)), layer.layer(service_fn(hold))
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(one, ("a", 1.0))
        tg.start_soon(other, ("a", 1.0))
    assert anyio.current_time() - start == 1.0
    assert isinstance(
        ServiceBuilder().layer(layer).service(service_fn(hold)), KeyedConcurrencyLimit
    )


async def hold(request: tuple[str, float]) -> None:
    await anyio.sleep(request[1])


async def test_what_the_key_function_raises_propagates() -> None:
    def broken(_: object) -> str:
        raise LookupError("no key in this request")

    svc = KeyedConcurrencyLimit(service_fn(hold), broken, {"a": 1})
    with pytest.raises(LookupError, match="no key in this request"):
        await svc(("a", 0))
    assert idle(svc)
