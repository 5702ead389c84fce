"""Workflows nested three deep: results, failures and cancellation at every level.

The workflow under test, with when each part runs when nothing fails::

    Sequential(                                        level 1
        prep                     0-1    -> [1, 2, 3, 4]
        Parallel(                                      level 2
            MapReduce(map, sum, limit=2)               level 3: map[i] takes 2 + (i - 1) / 4 s
                map[1] 1-3, map[2] 1-3.25, map[3] 3-5.5, map[4] 3.25-6
            Sequential(side1 1-2, side2 2-4.5)         level 3
        )                        1-6
        post                     6-7    -> "sum=100 side=4"
    )
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import Elapsed, ServiceBuilder
from towerpy.testing import wait_all_tasks_blocked
from towerpy.workflow import JoinPolicy, MapReduce, Parallel, Sequential

from ..tools.test_parallel import live_tasks
from .steps import Boom, Log, Step

pytestmark = pytest.mark.anyio


def build(
    log: Log,
    fail: str | None = None,
    policy: JoinPolicy = JoinPolicy.FAIL_FAST,
    map_timeout: float | None = None,
) -> Sequential[Any, Any]:
    def fails(name: str) -> Any:
        return lambda request: fail == name or fail == f"{name}[{request}]"

    mapper = MapReduce(
        Step(log, "map", lambda i: 2 + (i - 1) / 4, lambda x: x * 10, fails("map"), keyed=True),
        lambda acc, x: acc + x,
        initial=0,
        limit=2,
    )
    level3 = (
        mapper if map_timeout is None else ServiceBuilder().timeout(map_timeout).service(mapper)
    )
    side = Sequential(
        Step(log, "side1", 1, len, fails("side1")),
        Step(log, "side2", 2.5, lambda n: n, fails("side2")),
    )
    return Sequential(
        Step(log, "prep", 1, lambda n: list(range(1, n + 1)), fails("prep")),
        Parallel(level3, side, policy=policy),
        Step(log, "post", 1, lambda out: f"sum={out[0]} side={out[1]}"),
    )


async def settled(log: Log, baseline: int) -> None:
    """Checks that nothing runs or starts any more, and no task is left over."""
    started = list(log.started)
    await anyio.sleep(100)
    await wait_all_tasks_blocked()
    assert log.started == started
    assert log.running == 0
    assert live_tasks() == baseline


async def test_three_levels_give_the_result_in_the_time_of_their_critical_path() -> None:
    log = Log()
    assert await build(log)(4) == "sum=100 side=4"
    assert log.now() == 7
    assert log.times["map[3]"] == (3.0, 5.5)  # map[3] takes the place map[1] left
    assert log.times["map[4]"] == (3.25, 6.0)
    assert log.times["side2"] == (2.0, 4.5)
    assert log.peak == 3  # two map calls and a side step


@pytest.mark.parametrize(
    ("fail", "at", "cancelled", "never"),
    [
        ("prep", 1, [], ["map[1]", "side1", "post"]),  # level 1: nothing after it starts
        ("side2", 4.5, ["map[3]", "map[4]"], ["post"]),  # level 3's sibling: MapReduce stops
        ("map[1]", 3, ["map[2]", "side2"], ["map[3]", "post"]),  # up through every level
    ],
)
async def test_a_failure_at_any_level_stops_the_rest_and_propagates_unchanged(
    fail: str, at: float, cancelled: list[str], never: list[str]
) -> None:
    log = Log()
    baseline = live_tasks()
    with pytest.raises(Boom) as caught:
        await build(log, fail)(4)
    assert str(caught.value) == fail
    assert log.now() == at
    assert sorted(log.cancelled) == sorted(cancelled)
    assert not set(never) & set(log.started)
    await settled(log, baseline)


@pytest.mark.parametrize(
    ("after", "running"),
    [
        (0.5, ["prep"]),  # level 1
        (2.5, ["map[1]", "map[2]", "side2"]),  # levels 2 and 3
        (5, ["map[3]", "map[4]"]),  # level 3 alone: side is done
        (6.5, ["post"]),  # back at level 1
    ],
)
async def test_cancelling_at_any_level_cancels_whatever_runs_and_leaks_nothing(
    after: float, running: list[str]
) -> None:
    log = Log()
    baseline = live_tasks()
    with anyio.move_on_after(after) as scope:
        await build(log)(4)
    assert scope.cancelled_caught
    assert sorted(log.cancelled) == sorted(running)
    await settled(log, baseline)


async def test_isolate_in_the_middle_lets_the_outer_level_see_a_failure_of_the_inner_one() -> None:
    log = Log()
    flow = build(log, "map[2]", policy=JoinPolicy.ISOLATE)
    assert await flow(4) == "sum=map[2] side=4"  # post got the Boom in MapReduce's place
    assert log.now() == 5.5  # side2 ran to its end, 4.5, then post
    assert log.failed == ["map[2]"]
    assert log.cancelled == ["map[3]"]  # only the map call of the failed MapReduce


async def test_join_all_in_the_middle_waits_for_the_sibling_then_raises() -> None:
    log = Log()
    with pytest.raises(Boom, match=r"map\[1\]") as caught:
        await build(log, "map[1]", policy=JoinPolicy.JOIN_ALL)(4)
    assert log.now() == 4.5  # side2 ran to its end
    assert "side2" in log.finished
    assert isinstance(caught.value.step_outcomes[0], Boom)  # type: ignore[attr-defined]
    assert caught.value.step_outcomes[1] == 4  # type: ignore[attr-defined]


async def test_a_timeout_around_the_inner_level_cancels_its_map_calls() -> None:
    log = Log()
    baseline = live_tasks()
    with pytest.raises(Elapsed):
        await build(log, map_timeout=3)(4)
    assert log.now() == 4  # prep 1 + the 3 s timeout
    assert sorted(log.cancelled) == ["map[3]", "map[4]", "side2"]
    await settled(log, baseline)
