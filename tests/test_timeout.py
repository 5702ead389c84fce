from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import (
    ConcurrencyLimit,
    Elapsed,
    ServiceBuilder,
    Timeout,
    TimeoutLayer,
    service_fn,
)
from towerpy.testing import VirtualTimeEventLoop, mock_service, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def sleep_for(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


async def test_a_call_past_the_limit_raises_elapsed_naming_the_limit() -> None:
    inner, handle = mock_service()
    svc = Timeout(inner, 2)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:

        async def answer_late() -> None:
            _, responder = await handle.next_request()
            await anyio.sleep(5)
            assert responder.cancelled  # the inner call saw the cancellation and is gone

        tg.start_soon(answer_late)
        with pytest.raises(Elapsed, match=r"^request timed out after 2.0s$") as caught:
            await svc("slow")
        assert anyio.current_time() - start == 2
    assert caught.value.seconds == 2
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value.__cause__, anyio.get_cancelled_exc_class())


async def test_a_call_within_the_limit_returns_and_leaves_nothing_behind() -> None:
    svc = Timeout(service_fn(sleep_for), 2)
    start = anyio.current_time()
    assert await svc(1.5) == 1.5
    await anyio.sleep(10)  # the old deadline passes: nothing is cancelled
    assert anyio.current_time() - start == 11.5
    assert await svc(0) == 0


async def test_an_outer_scope_cancelled_while_the_timeout_is_pending_is_cancellation() -> None:
    svc = Timeout(service_fn(sleep_for), 5)
    start = anyio.current_time()
    with anyio.move_on_after(1) as scope:
        await svc(10)
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 1
    assert await svc(1) == 1  # the task is not left cancelled


async def test_an_outer_scope_cancelled_at_the_same_instant_wins_over_the_timeout() -> None:
    svc = Timeout(service_fn(sleep_for), 2)
    with anyio.move_on_after(2) as scope:
        await svc(10)
    assert scope.cancelled_caught  # cancellation, not Elapsed
    assert await svc(1) == 1


async def test_a_timeout_and_an_outer_cancellation_both_pending_is_cancellation() -> None:
    async def shielded_then_slow(_: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(3)  # the limit passes at 0.5, the outer scope is cancelled at 1
        await anyio.sleep(100)

    svc = Timeout(service_fn(shielded_then_slow), 0.5)
    scope = anyio.CancelScope()

    async def canceller() -> None:
        await anyio.sleep(1)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(canceller)
        with scope:
            await svc(None)
    assert scope.cancelled_caught  # both were pending when the shield ended: not Elapsed


async def test_nested_timeouts_the_one_whose_limit_passed_raises() -> None:
    hang = Timeout(service_fn(sleep_for), 1)

    async def recover(_: object) -> str:
        try:
            await hang(10)
        except Elapsed as exc:
            return f"inner gave up after {exc.seconds}"
        return "unreachable"

    outer = Timeout(service_fn(recover), 5)
    start = anyio.current_time()
    assert await outer(None) == "inner gave up after 1.0"
    assert anyio.current_time() - start == 1


async def test_nested_timeouts_passing_at_once_raise_the_outer_one() -> None:
    inner = Timeout(service_fn(sleep_for), 2)

    async def wait_then_call_inner(_: object) -> float:
        await anyio.sleep(1)
        return await inner(10)  # its deadline, 1 + 2, is the outer one's: 0 + 3

    outer = Timeout(service_fn(wait_then_call_inner), 3)
    with pytest.raises(Elapsed) as caught:
        await outer(None)
    assert caught.value.seconds == 3


async def test_a_timeout_in_a_task_group_fails_the_group_and_cancels_the_rest() -> None:
    svc = Timeout(service_fn(sleep_for), 1)
    finished: list[float] = []
    cancelled: list[float] = []

    async def run(delay: float, seconds: float) -> None:
        await anyio.sleep(delay)
        try:
            finished.append(await svc(seconds))
        except anyio.get_cancelled_exc_class():
            cancelled.append(seconds)
            raise

    async def run_all() -> None:
        async with anyio.create_task_group() as tg:
            for delay, seconds in ((0, 0.5), (0, 2), (0.5, 3)):
                tg.start_soon(run, delay, seconds)

    with pytest.raises(ExceptionGroup) as caught:
        await run_all()
    assert caught.group_contains(Elapsed)
    assert len(caught.value.exceptions) == 1
    assert finished == [0.5]
    assert cancelled == [3]


async def test_the_inner_call_and_its_child_tasks_are_really_cancelled() -> None:
    observed: list[str] = []

    async def fan_out(_: object) -> None:
        async def child(name: str) -> None:
            try:
                await anyio.sleep_forever()
            finally:
                observed.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(child, "a")
            tg.start_soon(child, "b")

    svc = Timeout(service_fn(fan_out), 1)
    with pytest.raises(Elapsed):
        await svc(None)
    assert sorted(observed) == ["a", "b"]
    await anyio.sleep(5)
    assert sorted(observed) == ["a", "b"]  # nothing kept running


async def test_a_shielded_section_of_the_call_finishes_before_elapsed() -> None:
    steps: list[str] = []

    async def careful(_: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(3)
            steps.append("shielded part done")
        await anyio.sleep(100)
        steps.append("unreachable")

    svc = Timeout(service_fn(careful), 1)
    start = anyio.current_time()
    with pytest.raises(Elapsed):
        await svc(None)
    assert steps == ["shielded part done"]
    # trio cancels as the shield ends; asyncio looks again within 10 ms of it
    assert 3 <= anyio.current_time() - start <= 3.01


async def test_a_timeout_inside_a_shielded_scope_still_fires() -> None:
    svc = Timeout(service_fn(sleep_for), 1)
    with anyio.CancelScope(shield=True), pytest.raises(Elapsed):
        await svc(10)


async def test_a_call_that_swallows_the_cancellation_returns_its_result() -> None:
    async def stubborn(_: object) -> str:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            return "swallowed"
        return "slept"

    svc = Timeout(service_fn(stubborn), 1)
    assert await svc(None) == "swallowed"
    start = anyio.current_time()
    await anyio.sleep(1)  # the task is not left cancelled
    assert anyio.current_time() - start == 1


async def test_a_call_that_turns_the_cancellation_into_an_error_raises_that_error() -> None:
    async def converts(_: object) -> None:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class() as exc:
            raise LookupError("gave up") from exc

    svc = Timeout(service_fn(converts), 1)
    with pytest.raises(LookupError, match="gave up"):
        await svc(None)
    start = anyio.current_time()
    await anyio.sleep(1)  # the task is not left cancelled
    assert anyio.current_time() - start == 1


async def test_waiting_for_inner_capacity_counts_toward_the_limit() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    svc = Timeout(limit, 2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limit, "holder")
        _, holder = await handle.next_request()
        with pytest.raises(Elapsed):
            await svc.call("waits for the permit")  # without ready(): the wait is in call()
        assert limit.statistics().waiting == 0
        holder.send(None)


async def test_ready_is_the_inner_services_and_not_bounded() -> None:
    inner, handle = mock_service()
    svc = Timeout(inner, 1)
    handle.allow(0)
    assert not await svc.try_ready()
    start = anyio.current_time()

    async def allow_later() -> None:
        await anyio.sleep(5)
        handle.allow(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(allow_later)
        await svc.ready()
    assert anyio.current_time() - start == 5


async def test_no_limit_and_a_zero_limit() -> None:
    assert await Timeout(service_fn(sleep_for), math.inf)(1000) == 1000
    start = anyio.current_time()
    with pytest.raises(Elapsed, match=r"after 0.0s"):
        await Timeout(service_fn(sleep_for), 0)(1)
    assert anyio.current_time() == start


@settings(deadline=None, max_examples=50)
@given(
    calls=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), min_size=1, max_size=25),
)
async def test_each_of_many_concurrent_calls_times_out_exactly_at_its_own_deadline(
    calls: list[tuple[int, int]],
) -> None:
    seconds = 2.5
    svc = Timeout(service_fn(sleep_for), seconds)
    start = anyio.current_time()
    outcomes: dict[int, tuple[str, float]] = {}

    async def client(i: int, arrival: int, latency: int) -> None:
        await anyio.sleep_until(start + arrival)
        try:
            await svc(latency)
            outcomes[i] = ("ok", anyio.current_time() - start)
        except Elapsed:
            outcomes[i] = ("elapsed", anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        for i, (arrival, latency) in enumerate(calls):
            tg.start_soon(client, i, arrival, latency)
    for i, (arrival, latency) in enumerate(calls):
        if latency < seconds:
            assert outcomes[i] == ("ok", arrival + latency)
        else:
            assert outcomes[i] == ("elapsed", arrival + seconds)


async def test_many_short_calls_behind_a_long_one_keep_the_deadline_queue_small() -> None:
    svc = Timeout(service_fn(sleep_for), 100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, 50)
        await wait_all_tasks_blocked()
        for _ in range(1000):
            await svc(0)
        queue = svc._queue
        if queue is not None:  # asyncio only: trio has deadlines of its own
            assert len(queue._entries) <= 2 * 1 + 64 + 1


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan])
def test_a_negative_or_nan_limit_is_refused_naming_the_argument(bad: float) -> None:
    for make in (
        lambda: TimeoutLayer(bad),
        lambda: Timeout(service_fn(sleep_for), bad),
        lambda: ServiceBuilder().timeout(bad),
    ):
        with pytest.raises(ValueError, match=r"^seconds must be a number of seconds >= 0"):
            make()


def test_a_limit_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(TypeError, match="seconds must be a number of seconds >= 0, got str"):
        TimeoutLayer("5")  # type: ignore[arg-type]


async def test_the_builder_shorthand_is_the_layer() -> None:
    builder = ServiceBuilder().timeout(0.5)
    (layer,) = builder.layers
    assert isinstance(layer, TimeoutLayer)
    assert layer.seconds == 0.5
    svc = builder.service(service_fn(sleep_for))
    assert isinstance(svc, Timeout)
    with pytest.raises(Elapsed, match=r"after 0.5s"):
        await svc(1)


def test_one_timeout_serves_one_event_loop_after_another() -> None:
    svc: Timeout[Any, Any] = Timeout(service_fn(sleep_for), 1)

    async def main() -> tuple[float, float]:
        with pytest.raises(Elapsed):
            await svc(5)
        return await svc(0.5), asyncio.get_running_loop().time()

    for _ in range(2):
        with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
            assert runner.run(main()) == (0.5, 1.5)
