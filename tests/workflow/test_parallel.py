"""Parallel: the same input to every step, outputs in step order, failures as in a tool batch."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import service_fn
from towerpy._backend import current_task
from towerpy.testing import wait_all_tasks_blocked
from towerpy.workflow import JoinPolicy, Parallel

from ..tools.test_parallel import live_tasks
from .steps import Boom, Log, Step

pytestmark = pytest.mark.anyio


async def test_every_step_gets_the_input_and_the_outputs_come_back_in_step_order() -> None:
    log = Log()
    flow = Parallel(
        Step(log, "slow", 3, lambda x: x * 10),
        Step(log, "fast", 1, lambda x: x + 1),
        Step(log, "mid", 2, str),
    )
    assert await flow(4) == [40, 5, "4"]
    assert log.finished == ["fast", "mid", "slow"]
    assert log.now() == 3


@settings(deadline=None, max_examples=40)
@given(delays=st.lists(st.integers(0, 5), min_size=1, max_size=12), limit=st.integers(1, 6))
async def test_at_most_limit_steps_run_at_once_and_order_is_kept(
    delays: list[int], limit: int
) -> None:
    log = Log()
    steps = [Step(log, f"s{n}", delay, tagged(n)) for n, delay in enumerate(delays)]
    outputs = await Parallel(*steps, limit=limit)("in")
    assert outputs == [(n, "in") for n in range(len(delays))]
    assert log.peak <= limit
    assert log.running == 0


def tagged(n: int) -> Any:
    return lambda x: (n, x)


async def test_join_all_waits_for_every_step_then_raises_the_earliest_failure_in_step_order() -> (
    None
):
    log = Log()
    flow = Parallel(
        Step(log, "a", 1),
        Step(log, "b", 3, fail=lambda x: True),
        Step(log, "c", 1, fail=lambda x: True),
        Step(log, "d", 4),
    )
    with pytest.raises(Boom) as caught:
        await flow(0)
    assert str(caught.value) == "b"  # c failed first, but b comes first in step order
    assert log.now() == 4
    assert log.cancelled == []
    outcomes = caught.value.step_outcomes  # type: ignore[attr-defined]
    assert [type(o).__name__ for o in outcomes] == ["int", "Boom", "Boom", "int"]
    assert (
        "towerpy Parallel: 2 of 4 steps failed (JOIN_ALL): step 1 (Step('b')): Boom"
        in (caught.value.__notes__[0])
    )


async def test_fail_fast_cancels_the_rest_at_the_first_failure_and_leaves_nothing_running() -> None:
    log = Log()
    flow = Parallel(
        Step(log, "a", 5),
        Step(log, "b", 1, fail=lambda x: True),
        Step(log, "c", 9),
        limit=2,
        policy=JoinPolicy.FAIL_FAST,
    )
    with pytest.raises(Boom, match=r"^b$"):
        await flow(0)
    assert log.now() == 1
    assert log.cancelled == ["a"]
    assert log.started == ["a", "b"]  # c was waiting for a slot: it never starts
    await anyio.sleep(20)
    await wait_all_tasks_blocked()
    assert log.started == ["a", "b"]
    assert log.running == 0


async def test_isolate_puts_each_failure_in_its_place_and_leaves_the_others_alone() -> None:
    log = Log()
    flow = Parallel(
        Step(log, "a", 1, lambda x: "A"),
        Step(log, "b", 1, fail=lambda x: True),
        policy=JoinPolicy.ISOLATE,
    )
    outputs = await flow(0)
    assert outputs[0] == "A"
    assert isinstance(outputs[1], Boom)


async def test_cancelling_the_call_cancels_every_step_and_leaks_no_task() -> None:
    log = Log()
    baseline = live_tasks()
    flow = Parallel(Step(log, "a", 5), Step(log, "b", 5), Step(log, "c", 5))
    with anyio.move_on_after(1):
        await flow(0)
    assert sorted(log.cancelled) == ["a", "b", "c"]
    await wait_all_tasks_blocked()
    assert live_tasks() == baseline
    assert log.running == 0


async def test_steps_that_never_wait_run_in_the_calling_task() -> None:
    tasks: set[int] = set()

    async def record(x: Any) -> Any:
        tasks.add(id(current_task()))
        return x

    assert await Parallel(service_fn(record), service_fn(record))(1) == [1, 1]
    assert tasks == {id(current_task())}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stray_cancelled_error_is_a_failure_of_that_step() -> None:
    async def waits_on_others(x: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.cancel)
        return await future

    flow = Parallel(service_fn(waits_on_others), service_fn(_same), policy=JoinPolicy.ISOLATE)
    outputs = await flow(1)
    assert isinstance(outputs[0], RuntimeError)
    assert "step 0 (service_fn(" in str(outputs[0])
    assert "raised CancelledError although nothing cancelled it" in str(outputs[0])
    assert outputs[1] == 1


async def _same(x: Any) -> Any:
    return x


def test_bad_arguments_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        Parallel()
    with pytest.raises(ValueError, match="limit must be >= 1"):
        Parallel(service_fn(_same), limit=0)
    with pytest.raises(TypeError, match="policy must be a JoinPolicy"):
        Parallel(service_fn(_same), policy="fail_fast")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="Parallel step 0 must be a Service"):
        Parallel(42)  # type: ignore[call-overload]


def test_its_repr_names_the_steps_the_limit_and_the_policy() -> None:
    flow = Parallel(service_fn(_same), limit=2, policy=JoinPolicy.FAIL_FAST)
    assert repr(flow).startswith("Parallel(service_fn(")
    assert repr(flow).endswith(", limit=2, policy=FAIL_FAST)")
