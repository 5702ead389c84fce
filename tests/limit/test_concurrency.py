from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import (
    ConcurrencyBackend,
    ConcurrencyLimit,
    ConcurrencyLimiter,
    ConcurrencyLimitLayer,
    ConcurrencyStatistics,
    Elapsed,
    ServiceBuilder,
    TimeoutLayer,
    lowlevel,
    service_fn,
)
from towerpy.testing import InFlightProbe, mock_service, wait_all_tasks_blocked

from ..reference import settle

pytestmark = pytest.mark.anyio


async def echo(x: Any) -> Any:
    return x


def assert_full(limit: ConcurrencyLimit[Any, Any]) -> None:
    stats = limit.statistics()
    assert (stats.in_flight, stats.waiting) == (0, 0)


async def test_third_caller_waits_until_a_permit_frees() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 2)
    results: list[str] = []

    async def caller(name: str) -> None:
        results.append(await limit(name))

    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(caller, name)
            await wait_all_tasks_blocked()
        assert handle.pending == 2
        assert limit.statistics() == ConcurrencyStatistics(2, 2, 1)
        request, responder = await handle.next_request()
        assert request == "a"
        responder.send("A")
        await wait_all_tasks_blocked()
        assert handle.pending == 2  # c got a's permit
        for expected in "bc":
            request, responder = await handle.next_request()
            assert request == expected
            responder.send(expected.upper())
    assert sorted(results) == ["A", "B", "C"]
    assert_full(limit)


async def test_waiters_are_served_in_arrival_order() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(limit, i)
            await wait_all_tasks_blocked()
        served = []
        for _ in range(5):
            request, responder = await handle.next_request()
            served.append(request)
            responder.send(None)
    assert served == [0, 1, 2, 3, 4]
    assert_full(limit)


async def test_ready_reserves_a_permit_that_other_tasks_see_as_taken() -> None:
    limit = ConcurrencyLimit(service_fn(echo), 1)
    await limit.ready()
    await limit.ready()  # still one reservation
    assert limit.statistics().in_flight == 1
    seen: list[bool] = []

    async def other() -> None:
        seen.append(await limit.try_ready())

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
    assert seen == [False]
    assert await limit.call("mine") == "mine"  # uses the reservation without waiting
    assert_full(limit)


async def test_try_ready_reserves_only_when_a_permit_is_free() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    handle.allow(0)
    assert not await limit.try_ready()  # the inner service is not ready: nothing held
    assert_full(limit)
    handle.allow(None)
    assert await limit.try_ready()
    assert limit.statistics().in_flight == 1
    lowlevel.drop(limit)
    assert_full(limit)


async def test_an_unused_reservation_is_given_back_when_its_task_ends() -> None:
    limit = ConcurrencyLimit(service_fn(echo), 1)

    async def reserve_and_leave() -> None:
        await limit.ready()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserve_and_leave)
    await settle()
    assert_full(limit)
    assert await limit("again") == "again"


async def test_each_layer_call_gets_its_own_count() -> None:
    layer = ConcurrencyLimitLayer(1)
    first_inner, first_handle = mock_service()
    second_inner, second_handle = mock_service()
    first, second = layer.layer(first_inner), layer.layer(second_inner)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first, "a")
        tg.start_soon(second, "b")
        _, r1 = await first_handle.next_request()  # neither waits for the other
        _, r2 = await second_handle.next_request()
        r1.send(None)
        r2.send(None)
    assert first.limiter is not second.limiter


async def test_a_shared_limiter_bounds_every_service_it_is_passed_to() -> None:
    limiter = ConcurrencyLimiter(2)
    probe = InFlightProbe(service_fn(lambda_sleep))
    layer = ConcurrencyLimitLayer(limiter=limiter)
    services = [layer.layer(probe), layer.layer(probe), ConcurrencyLimit(probe, limiter=limiter)]
    async with anyio.create_task_group() as tg:
        for svc in services:
            for _ in range(3):
                tg.start_soon(svc, 1.0)
    assert probe.peak == 2
    assert sorted(end for _, end in probe.calls) == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0]
    assert all(svc.statistics() == ConcurrencyStatistics(2, 0, 0) for svc in services)


async def lambda_sleep(seconds: float) -> None:
    await anyio.sleep(seconds)


@pytest.mark.parametrize(
    "leave", ["return", "raise", "cancel_waiting", "cancel_running", "timeout", "unused_ready"]
)
async def test_every_way_of_leaving_gives_the_permit_back(leave: str) -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    timed = TimeoutLayer(5).layer(limit)
    outcomes: list[str] = []

    async def holder() -> None:  # holds the only permit, so that the second caller waits
        await limit("first")

    async def second(scope: anyio.CancelScope) -> None:
        with scope:
            try:
                if leave == "timeout":
                    await timed("second")
                elif leave == "unused_ready":
                    await limit.ready()
                else:
                    await limit("second")
            except ValueError:
                outcomes.append("raised")
            except Elapsed:
                outcomes.append("elapsed")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        _, first = await handle.next_request()
        tg.start_soon(second, scope)
        await wait_all_tasks_blocked()
        assert limit.statistics().waiting == 1
        if leave == "cancel_waiting":
            scope.cancel()
            await wait_all_tasks_blocked()
            assert limit.statistics() == ConcurrencyStatistics(1, 1, 0)
        first.send(None)
        if leave in ("return", "raise", "cancel_running", "timeout"):
            _, responder = await handle.next_request()
            if leave == "return":
                responder.send(None)
            elif leave == "raise":
                responder.fail(ValueError("boom"))
            elif leave == "cancel_running":
                scope.cancel()
            # "timeout": left waiting, the limit fires
    await settle()
    assert_full(limit)
    assert outcomes == {"raise": ["raised"], "timeout": ["elapsed"]}.get(leave, [])


async def test_a_waiter_cancelled_just_as_it_is_handed_a_permit_passes_it_on() -> None:
    limiter = ConcurrencyLimiter(1)
    permit = limiter.acquire_nowait()
    assert permit is not None
    scope = anyio.CancelScope()
    got: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            limiter.release(await limiter.acquire())
            got.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "cancelled", scope)
        await wait_all_tasks_blocked()
        tg.start_soon(waiter, "next", anyio.CancelScope())
        await wait_all_tasks_blocked()
        scope.cancel()  # the first waiter is cancelled, and before it runs...
        limiter.release(permit)  # ...the permit is handed to it
    assert got == ["next"]
    assert limiter.statistics() == ConcurrencyStatistics(1, 0, 0)


@settings(deadline=None, max_examples=60)
@given(
    limit_size=st.integers(1, 4),
    calls=st.lists(
        st.tuples(
            st.integers(0, 6),  # arrival time
            st.integers(0, 4),  # latency
            st.sampled_from(["ok", "fail", "cancel", "ready_first"]),
        ),
        min_size=1,
        max_size=14,
    ),
)
async def test_peak_in_flight_never_exceeds_the_limit_and_nothing_leaks(
    limit_size: int, calls: list[tuple[int, int, str]]
) -> None:
    limit: ConcurrencyLimit[Any, Any]

    async def work(request: tuple[int, str]) -> None:
        latency, kind = request
        stats = limit.statistics()
        assert stats.in_flight <= limit_size
        await anyio.sleep(latency)
        if kind == "fail":
            raise ValueError("drawn failure")

    probe = InFlightProbe(service_fn(work))
    limit = ConcurrencyLimit(probe, limit_size)
    start = anyio.current_time()

    async def client(arrival: int, latency: int, kind: str) -> None:
        await anyio.sleep_until(start + arrival)
        with anyio.move_on_after(2 if kind == "cancel" else 100):
            try:
                if kind == "ready_first":
                    await limit.ready()
                    await anyio.sleep(latency)  # holding the reservation counts as in flight
                await limit.call((latency, kind))
            except ValueError:
                pass

    async with anyio.create_task_group() as tg:
        for arrival, latency, kind in calls:
            tg.start_soon(client, arrival, latency, kind)
    await settle(until=lambda: limit.statistics().in_flight == 0)
    assert probe.peak <= limit_size
    assert probe.in_flight == 0
    assert_full(limit)


def test_statistics_are_frozen_and_report_what_is_free() -> None:
    stats = ConcurrencyStatistics(max_in_flight=4, in_flight=3, waiting=0)
    assert stats.available == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.in_flight = 0  # type: ignore[misc]


def test_the_limiter_refuses_a_release_without_an_acquire() -> None:
    limiter = ConcurrencyLimiter(1)
    with pytest.raises(RuntimeError, match="more times than acquire"):
        limiter.release(True)


@pytest.mark.parametrize("bad", [0, -1])
def test_a_limit_below_one_is_refused_naming_the_argument(bad: int) -> None:
    for make in (
        lambda: ConcurrencyLimitLayer(bad),
        lambda: ConcurrencyLimiter(bad),
        lambda: ConcurrencyLimit(service_fn(echo), bad),
        lambda: ServiceBuilder().concurrency_limit(bad),
    ):
        with pytest.raises(ValueError, match=rf"max_in_flight must be >= 1, got {bad}"):
            make()


@pytest.mark.parametrize("bad", [2.5, "3", True, None])
def test_a_limit_that_is_not_an_int_is_refused(bad: Any) -> None:
    if bad is None:
        with pytest.raises(ValueError, match=r"needs max_in_flight .* or limiter="):
            ConcurrencyLimitLayer(bad)
    else:
        with pytest.raises(TypeError, match="max_in_flight must be an int >= 1"):
            ConcurrencyLimitLayer(bad)


def test_both_a_count_and_a_limiter_is_refused() -> None:
    with pytest.raises(ValueError, match="max_in_flight or limiter=, not both"):
        ConcurrencyLimitLayer(2, limiter=ConcurrencyLimiter(2))
    with pytest.raises(TypeError, match="limiter must be a ConcurrencyLimiter"):
        ConcurrencyLimitLayer(limiter=3)  # type: ignore[arg-type]


async def test_the_builder_shorthand_is_the_layer() -> None:
    builder = ServiceBuilder().concurrency_limit(3)
    (layer,) = builder.layers
    assert isinstance(layer, ConcurrencyLimitLayer)
    svc = builder.service(service_fn(echo))
    assert isinstance(svc, ConcurrencyLimit)
    assert svc.statistics().max_in_flight == 3
    assert await svc("x") == "x"


class RemoteStyleLimiter:
    """A backend the way a remote one would be: no fast path, permits are lease ids, and
    releases are queued for a sender task instead of being done on the spot."""

    def __init__(self, limit: int) -> None:
        self.local = ConcurrencyLimiter(limit)
        self.next_lease = 0
        self.leases: set[int] = set()
        self.queued_releases: list[int] = []

    def acquire_nowait(self) -> object | None:
        return None  # deciding needs a round trip

    async def acquire(self) -> object:
        await self.local.acquire()
        self.next_lease += 1
        self.leases.add(self.next_lease)
        return self.next_lease

    async def try_acquire(self) -> object | None:
        if self.local.acquire_nowait() is None:
            return None
        self.next_lease += 1
        self.leases.add(self.next_lease)
        return self.next_lease

    def release(self, permit: object) -> None:
        assert isinstance(permit, int)
        self.queued_releases.append(permit)
        self.leases.remove(permit)
        self.local.release(True)

    def statistics(self) -> ConcurrencyStatistics:
        return self.local.statistics()


async def test_any_concurrency_backend_can_stand_in_for_the_limiter() -> None:
    backend = RemoteStyleLimiter(1)
    assert isinstance(backend, ConcurrencyBackend)
    probe = InFlightProbe(service_fn(lambda_sleep))
    svc = ServiceBuilder().layer(ConcurrencyLimitLayer(limiter=backend)).service(probe)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(svc, 1.0)
    await svc.ready()
    await svc.call(0.0)
    assert probe.peak == 1
    assert backend.leases == set()
    assert sorted(backend.queued_releases) == [1, 2, 3, 4]
