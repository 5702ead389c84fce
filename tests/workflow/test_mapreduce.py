"""MapReduce: maps in parallel within the limit, reduces in input order as the results come."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import service_fn
from towerpy.testing import wait_all_tasks_blocked
from towerpy.workflow import JoinPolicy, MapReduce

from .steps import Boom, Log, Step

pytestmark = pytest.mark.anyio


def delays(values: list[int]) -> Any:
    return lambda item: values[item]


async def test_it_reduces_each_result_as_soon_as_those_before_it_are_in() -> None:
    log = Log()
    reduced: list[tuple[int, float]] = []

    def add(acc: int, result: int) -> int:
        reduced.append((result, log.now()))
        return acc + result

    latencies = [1, 5, 1, 2, 1]
    flow = MapReduce(Step(log, "map", delays(latencies), keyed=True), add, initial=0, limit=5)
    assert await flow(range(5)) == 10
    assert [log.times[f"map[{i}]"][0] for i in range(5)] == [0] * 5  # all mapped in parallel
    # item 0 is reduced at once; 1 holds up 2, 3, 4, which are all in when it is
    assert reduced == [(0, 1), (1, 5), (2, 5), (3, 5), (4, 5)]


@settings(deadline=None, max_examples=50)
@given(latencies=st.lists(st.integers(0, 6), max_size=15), limit=st.integers(1, 5))
async def test_the_reduction_follows_input_order_at_the_earliest_instant_within_the_limit(
    latencies: list[int], limit: int
) -> None:
    log = Log()
    reduced: list[tuple[int, float]] = []

    def collect(acc: tuple[int, ...], result: int) -> tuple[int, ...]:
        reduced.append((result, log.now()))
        return (*acc, result)

    step = Step(log, "map", delays(latencies), keyed=True)
    empty: tuple[int, ...] = ()
    result = await MapReduce(step, collect, initial=empty, limit=limit)(range(len(latencies)))
    assert result == tuple(range(len(latencies)))
    assert log.peak <= limit
    ends = [log.times[f"map[{i}]"][1] for i in range(len(latencies))]
    assert [t for _, t in reduced] == [max(ends[: i + 1]) for i in range(len(ends))]


async def test_no_items_give_the_initial_value_and_any_iterable_is_mapped() -> None:
    double = service_fn(_double)
    empty: list[int] = []
    flow = MapReduce(double, lambda acc, x: [*acc, x], initial=empty)
    assert await flow([]) == []
    assert await flow(x for x in (1, 2)) == [2, 4]
    assert await flow({"a": 1}.values()) == [2]
    with pytest.raises(TypeError, match="got a str; pass a list"):
        await flow("abc")  # type: ignore[arg-type]


async def _double(x: int) -> int:
    return x * 2


async def test_fail_fast_is_the_default_it_cancels_the_map_calls_still_running() -> None:
    log = Log()
    step = Step(log, "map", delays([5, 1, 5, 5]), fail=lambda item: item == 1, keyed=True)
    flow = MapReduce(step, lambda acc, x: acc + x, initial=0, limit=3)
    with pytest.raises(Boom, match=r"map\[1\]"):
        await flow(range(4))
    assert log.now() == 1
    assert sorted(log.cancelled) == ["map[0]", "map[2]"]
    await anyio.sleep(10)
    await wait_all_tasks_blocked()
    assert "map[3]" not in log.started
    assert log.running == 0


async def test_join_all_maps_every_item_reduces_up_to_the_first_failure_then_raises_it() -> None:
    log = Log()
    seen: list[int] = []

    def add(acc: int, x: int) -> int:
        seen.append(x)
        return acc + x

    fails = {2, 4}
    step = Step(log, "map", 1, fail=lambda item: item in fails, keyed=True)
    flow = MapReduce(step, add, initial=0, limit=2, policy=JoinPolicy.JOIN_ALL)
    with pytest.raises(Boom, match=r"map\[2\]") as caught:
        await flow(range(6))
    assert seen == [0, 1]
    assert len(log.started) == 6
    assert (
        "2 of 6 items failed (JOIN_ALL): item 2: Boom, item 4: Boom" in (caught.value.__notes__[0])
    )


async def test_isolate_hands_the_reducer_each_failure_in_its_place() -> None:
    log = Log()
    step = Step(log, "map", 1, fail=lambda item: item == 1, keyed=True)

    def count(acc: tuple[int, int], result: int | Exception) -> tuple[int, int]:
        ok, failed = acc
        return (ok + 1, failed) if not isinstance(result, Exception) else (ok, failed + 1)

    flow = MapReduce(step, count, initial=(0, 0), policy=JoinPolicy.ISOLATE)
    assert await flow(range(4)) == (3, 1)


async def test_a_failing_reducer_cancels_the_map_calls_and_raises_with_a_note() -> None:
    log = Log()

    def picky(acc: int, x: int) -> int:
        if x == 1:
            raise KeyError(x)
        return acc + x

    step = Step(log, "map", delays([1, 1, 9]), keyed=True)
    flow = MapReduce(step, picky, initial=0, limit=3)
    with pytest.raises(KeyError) as caught:
        await flow(range(3))
    assert caught.value.__notes__ == ["towerpy MapReduce: raised by reduce() at item 1"]
    assert log.cancelled == ["map[2]"]
    assert log.now() == 1


async def test_cancelling_the_call_cancels_every_map_call() -> None:
    log = Log()
    flow = MapReduce(Step(log, "map", 5, keyed=True), lambda a, x: a, initial=0, limit=2)
    with anyio.move_on_after(1):
        await flow(range(4))
    assert sorted(log.cancelled) == ["map[0]", "map[1]"]
    await anyio.sleep(10)
    await wait_all_tasks_blocked()
    assert len(log.started) == 2


def test_bad_arguments_are_refused_at_construction() -> None:
    double = service_fn(_double)

    async def areduce(acc: int, x: int) -> int:
        return acc + x

    with pytest.raises(TypeError, match="reduce must be a plain"):
        MapReduce(double, areduce, initial=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"map must be a Service.*service_fn"):
        MapReduce(_double, lambda a, x: a, initial=0)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        MapReduce(double, lambda a, x: a, initial=0, limit=0)
    with pytest.raises(TypeError, match="policy must be a JoinPolicy"):
        MapReduce(double, lambda a, x: a, initial=0, policy=None)  # type: ignore[call-overload]
