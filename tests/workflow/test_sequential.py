"""Sequential: each step's output is the next one's input; failures and cancellation stop it."""

from __future__ import annotations

from typing import Any, Self

import anyio
import pytest

from towerpy import ConcurrencyLimit, Service, service_fn
from towerpy.testing import wait_all_tasks_blocked
from towerpy.workflow import Sequential

from .steps import Boom, Log, Step

pytestmark = pytest.mark.anyio


async def test_each_step_gets_the_previous_output_and_the_last_output_is_returned() -> None:
    log = Log()
    flow = Sequential(
        Step(log, "add", 1, lambda x: x + 1),
        Step(log, "double", 2, lambda x: x * 2),
        Step(log, "show", 0, str),
    )
    assert await flow(3) == "8"
    assert log.times == {"add": (0, 1), "double": (1, 3), "show": (3, 3)}


async def test_a_failing_step_raises_unchanged_and_the_later_steps_never_run() -> None:
    log = Log()
    flow = Sequential(Step(log, "a", 1), Step(log, "b", 1, fail=lambda x: True), Step(log, "c"))
    with pytest.raises(Boom, match=r"^b$"):
        await flow(0)
    assert log.started == ["a", "b"]


async def test_cancelling_the_call_cancels_the_running_step_and_runs_no_more() -> None:
    log = Log()
    flow = Sequential(Step(log, "a", 1), Step(log, "b", 5), Step(log, "c"))
    with anyio.move_on_after(2):
        await flow(0)
    assert log.cancelled == ["b"]
    await anyio.sleep(10)
    await wait_all_tasks_blocked()
    assert log.started == ["a", "b"]
    assert log.running == 0


async def test_ready_reserves_the_first_steps_capacity() -> None:
    first = ConcurrencyLimit(service_fn(_same), 1)
    flow = Sequential(first, service_fn(_same))
    await flow.ready()
    assert first.statistics().in_flight == 1
    assert await flow.try_ready()  # the same task: still the one reservation
    flow.drop_reservation()
    assert first.statistics().in_flight == 0


async def _same(x: Any) -> Any:
    return x


async def test_entering_it_enters_each_distinct_step_once_in_order_and_exits_in_reverse() -> None:
    events: list[str] = []

    class Entered(Service[Any, Any]):
        def __init__(self, name: str) -> None:
            self.name = name

        async def call(self, request: Any) -> Any:
            return request

        async def __aenter__(self) -> Self:
            events.append(f"enter {self.name}")
            return self

        async def __aexit__(self, *exc: object) -> None:
            events.append(f"exit {self.name}")

    a, b = Entered("a"), Entered("b")
    flow = Sequential(a, b, a)
    async with flow as entered:
        assert entered is flow
        assert await flow(1) == 1
    assert events == ["enter a", "enter b", "exit b", "exit a"]


def test_a_sequential_needs_services() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        Sequential()  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"Sequential step 1 must be a Service.*service_fn"):
        Sequential(service_fn(_same), _same)  # type: ignore[call-overload]


def test_its_repr_names_the_steps() -> None:
    log = Log.__new__(Log)
    assert repr(Sequential(Step(log, "a"), Step(log, "b"))) == "Sequential(Step('a'), Step('b'))"
