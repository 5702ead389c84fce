"""The ready()/call() reservation rules of the contract, one by one, on a reference limiter."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import lowlevel, service_fn
from towerpy.testing import InFlightProbe, mock_service, wait_all_tasks_blocked

from .reference import ReferenceLimit, held, settle

pytestmark = pytest.mark.anyio


async def echo(x: Any) -> Any:
    return x


async def test_call_alone_acquires_and_the_second_caller_waits() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)
    results: list[str] = []

    async def caller(name: str) -> None:
        results.append(await limit.call(name))

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, "a")
        await wait_all_tasks_blocked()  # trio starts tasks in no fixed order: make it a, then b
        tg.start_soon(caller, "b")
        await wait_all_tasks_blocked()
        assert handle.pending == 1  # b waits for the permit
        request, responder = await handle.next_request()
        assert request == "a"
        responder.send("A")
        request, responder = await handle.next_request()
        assert request == "b"
        responder.send("B")
    assert results == ["A", "B"]
    assert limit.in_use == 0


async def test_ready_reserves_capacity_that_other_tasks_see_as_taken() -> None:
    limit = ReferenceLimit(service_fn(echo), 1)
    await limit.ready()
    assert limit.in_use == 1
    other_ready = anyio.Event()

    async def other() -> None:
        assert not await limit.try_ready()
        await limit.ready()
        other_ready.set()
        await limit.call("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await wait_all_tasks_blocked()
        assert not other_ready.is_set()
        assert await limit.call("mine") == "mine"  # uses the reservation, does not wait
        await other_ready.wait()
    assert limit.in_use == 0


async def test_second_ready_keeps_one_reservation() -> None:
    limit = ReferenceLimit(service_fn(echo), 2)
    await limit.ready()
    await limit.ready()
    assert limit.in_use == 1
    assert await limit.call(1) == 1
    assert limit.in_use == 0
    assert not held(limit)


async def test_call_consumes_the_reservation_and_the_next_call_acquires_again() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)

    async def two_calls() -> None:
        await limit.ready()
        await limit.call(1)
        await limit.call(2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(two_calls)
        for expected in (1, 2):
            request, responder = await handle.next_request()
            assert request == expected
            assert limit.in_use == 1
            responder.send(None)
    assert limit.in_use == 0


async def test_reservation_of_a_task_that_ends_without_calling_is_given_back() -> None:
    limit = ReferenceLimit(service_fn(echo), 1)

    async def reserve_and_leave() -> None:
        await limit.ready()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserve_and_leave)
    await settle()
    assert limit.in_use == 0
    assert await limit.try_ready()


async def test_a_waiter_is_woken_when_the_reserving_task_ends_without_calling() -> None:
    limit = ReferenceLimit(service_fn(echo), 1)
    done = anyio.Event()

    async def reserve_and_leave() -> None:
        await limit.ready()

    async def waiter() -> None:
        await limit.call("late")
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserve_and_leave)
        await wait_all_tasks_blocked()
        tg.start_soon(waiter)
        await settle()
        await done.wait()
    assert limit.in_use == 0


async def test_cancelled_while_waiting_in_ready_holds_nothing() -> None:
    limit = ReferenceLimit(service_fn(echo), 1)
    await limit.ready()  # this task holds the only permit
    observed: list[bool] = []

    async def waiter(scope: anyio.CancelScope) -> None:
        with scope:
            await limit.ready()
        observed.append(held(limit))

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, scope)
        await wait_all_tasks_blocked()
        scope.cancel()
    assert observed == [False]
    assert not limit.counter.waiters
    await limit.call("x")
    assert limit.in_use == 0


async def test_cancelled_in_inner_ready_gives_back_the_outer_reservation() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    outer = ReferenceLimit(inner, 1)
    with anyio.move_on_after(5) as scope:
        await outer.ready()
    assert scope.cancelled_caught
    assert outer.in_use == 0
    assert not held(outer)
    assert handle.allowed == 0


async def test_cancelled_during_call_gives_the_permit_back() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)
    scope = anyio.CancelScope()

    async def caller() -> None:
        with scope:
            await limit.call("x")

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        _, responder = await handle.next_request()
        assert limit.in_use == 1
        scope.cancel()
    assert responder.cancelled
    assert limit.in_use == 0


async def test_failed_call_gives_the_permit_back() -> None:
    async def boom(_: object) -> None:
        raise ValueError("boom")

    limit = ReferenceLimit(service_fn(boom), 1)
    await limit.ready()
    with pytest.raises(ValueError, match="boom"):
        await limit.call(1)
    assert limit.in_use == 0


async def test_dunder_call_uses_the_reservation_like_ready_then_call() -> None:
    order: list[str] = []

    async def record(x: str) -> None:
        order.append(x)

    limit = ReferenceLimit(service_fn(record), 1)
    await limit.ready()

    async def via_dunder_call() -> None:
        await limit("child")

    async with anyio.create_task_group() as tg:
        tg.start_soon(via_dunder_call)
        await wait_all_tasks_blocked()
        assert order == []  # the child waits: the permit is reserved by this task
        await limit.ready()  # still the one reservation
        assert limit.in_use == 1
        await limit("mine")  # consumes it without waiting; the child gets the permit after
    assert order == ["mine", "child"]
    assert limit.in_use == 0


async def test_try_ready_reserves_when_free_and_holds_nothing_when_full() -> None:
    inner, handle = mock_service()
    outer = ReferenceLimit(inner, 1)
    handle.allow(0)
    assert not await outer.try_ready()
    assert outer.in_use == 0
    handle.allow(1)
    assert await outer.try_ready()
    assert outer.in_use == 1
    assert handle.allowed == 0
    assert await outer.try_ready()  # already reserved: still ready, nothing more taken
    assert outer.in_use == 1


async def test_tasks_started_after_ready_do_not_use_the_reservation() -> None:
    order: list[str] = []

    async def record(x: str) -> None:
        order.append(x)

    limit = ReferenceLimit(service_fn(record), 1)
    await limit.ready()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limit.call, "child")
        await wait_all_tasks_blocked()
        assert order == []  # the child waits: the permit is its parent's
        assert not await _child_try_ready(limit)
        await limit.call("parent")  # the parent's call uses its reservation, without waiting
    assert order == ["parent", "child"]
    assert limit.in_use == 0
    assert not held(limit)


async def _child_try_ready(limit: ReferenceLimit[Any, Any]) -> bool:
    result: list[bool] = []

    async def child() -> None:
        result.append(await limit.try_ready())

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
    return result[0]


async def test_a_reservation_made_by_a_child_task_is_invisible_to_its_parent() -> None:
    limit = ReferenceLimit(service_fn(echo), 2)
    await limit.call("parent uses the service first")
    child_reserved = anyio.Event()
    release_child = anyio.Event()

    async def child() -> None:
        await limit.ready()
        child_reserved.set()
        await release_child.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
        await child_reserved.wait()
        assert not held(limit)
        assert limit.in_use == 1
        release_child.set()
    await settle()
    assert limit.in_use == 0


async def test_detached_reservations_are_used_by_the_task_they_are_attached_to() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 2)

    async def run_call(handoff: lowlevel.Handoff | None) -> None:
        lowlevel.attach(handoff)
        assert held(limit)
        await limit.call("handed over")

    await limit.ready()
    handoff = lowlevel.detach()
    assert not held(limit)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_call, handoff)
        await limit.ready()  # a new reservation: the first belongs to the child now
        assert limit.in_use == 2
        _, responder = await handle.next_request()
        responder.send(None)
    assert limit.in_use == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(answer_next, handle)
        await limit.call("mine")  # uses the second reservation
    assert limit.in_use == 0
    assert not held(limit)


async def answer_next(handle: Any) -> None:
    _, responder = await handle.next_request()
    responder.send(None)


async def test_detached_reservations_never_attached_are_given_back() -> None:
    limit = ReferenceLimit(service_fn(echo), 1)
    await limit.ready()
    handoff = lowlevel.detach()
    assert limit.in_use == 1
    del handoff
    await settle()
    assert limit.in_use == 0


async def test_a_task_collected_in_another_thread_releases_on_the_loop() -> None:
    limit = ReferenceLimit(service_fn(echo), 1)
    release_threads: list[int] = []
    original = limit.counter.release

    def recording_release(permit: int) -> None:
        release_threads.append(threading.get_ident())
        original(permit)

    limit.counter.release = recording_release  # type: ignore[method-assign,assignment]
    await limit.ready()
    handoff = lowlevel.detach()
    box = [handoff]
    del handoff
    # the last reference dies in a worker thread, so the finalizer runs there
    await anyio.to_thread.run_sync(box.clear)
    await settle()
    assert release_threads == [threading.get_ident()]
    assert limit.in_use == 0


async def test_two_stacked_limits_reserve_both_and_release_both() -> None:
    inner, handle = mock_service()
    inner_limit = ReferenceLimit(inner, 1)
    outer_limit = ReferenceLimit(inner_limit, 1)
    await outer_limit.ready()
    assert (outer_limit.in_use, inner_limit.in_use) == (1, 1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(answer_next, handle)
        await outer_limit.call("x")
    assert (outer_limit.in_use, inner_limit.in_use) == (0, 0)


# --- random interleavings -----------------------------------------------------------------

op = st.one_of(
    st.tuples(st.just("ready"), st.integers(0, 3)),
    st.tuples(st.just("try_ready"), st.integers(0, 3)),
    st.tuples(st.just("call"), st.integers(0, 3)),
    st.tuples(st.just("cancel_ready"), st.integers(0, 3)),
    st.tuples(st.just("cancel_call"), st.integers(0, 3)),
    st.tuples(st.just("fail_call"), st.integers(0, 3)),
    st.tuples(st.just("sleep"), st.integers(1, 3)),
)


@settings(deadline=None, max_examples=150)
@given(
    outer_limit=st.integers(1, 3),
    inner_limit=st.integers(1, 3),
    scripts=st.lists(st.lists(op, max_size=6), min_size=1, max_size=6),
)
async def test_random_interleavings_never_exceed_and_never_leak_capacity(
    outer_limit: int, inner_limit: int, scripts: list[list[tuple[str, int]]]
) -> None:
    in_flight = 0
    peak = 0

    async def work(request: tuple[str, int]) -> None:
        nonlocal in_flight, peak
        kind, duration = request
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            # capacity out = reservations + running calls; it never exceeds either limit
            assert inner.in_use <= inner_limit
            assert outer.in_use <= outer_limit
            await anyio.sleep(duration)
            if kind == "fail_call":
                raise ValueError("drawn failure")
        finally:
            in_flight -= 1

    probe = InFlightProbe(service_fn(work))
    inner = ReferenceLimit(probe, inner_limit)
    outer = ReferenceLimit(inner, outer_limit)

    async def run(script: list[tuple[str, int]]) -> None:
        for kind, arg in script:
            if kind == "ready":
                await outer.ready()
            elif kind == "try_ready":
                await outer.try_ready()
            elif kind == "call":
                await outer.call(("call", arg))
            elif kind == "fail_call":
                with pytest.raises(ValueError, match="drawn failure"):
                    await outer.call(("fail_call", arg))
            elif kind == "cancel_ready":
                with anyio.move_on_after(arg) as scope:
                    await outer.ready()
                if scope.cancelled_caught:  # cancelled while waiting: holds nothing afterwards
                    assert not held(outer)
                    assert not held(inner)
            elif kind == "cancel_call":
                with anyio.move_on_after(arg):
                    await outer.call(("call", arg + 1))
                assert not held(outer)
            else:
                await anyio.sleep(arg)
            assert outer.in_use <= outer_limit
            assert inner.in_use <= inner_limit

    async with anyio.create_task_group() as tg:
        for script in scripts:
            tg.start_soon(run, script)
    await settle(until=lambda: (outer.in_use, inner.in_use) == (0, 0))
    assert peak <= min(outer_limit, inner_limit)
    assert probe.in_flight == 0
    assert (outer.in_use, inner.in_use) == (0, 0)
    assert not outer.counter.waiters
    assert not inner.counter.waiters
