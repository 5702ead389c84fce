"""Dependency graphs of tool calls: each starts when its last dependency ends, within the limit."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import DependencyFailed, Elapsed, Service
from towerpy.testing import wait_all_tasks_blocked
from towerpy.tools import (
    JoinPolicy,
    ParallelToolRouter,
    ToolGraph,
    ToolInvocation,
    ToolOutput,
    ToolRouter,
    tool,
)

from .test_parallel import live_tasks

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


class Recorder(Service[ToolInvocation, ToolOutput]):
    """A router whose invocations sleep ``delay``, then fail or return; it records when."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.starts: dict[str, float] = {}
        self.ends: dict[str, float] = {}
        self.arguments: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, Exception] = {}

    async def call(self, request: ToolInvocation) -> ToolOutput:
        self.started.append(request.id)
        self.arguments[request.id] = request.arguments
        self.starts[request.id] = anyio.current_time()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(request.arguments.get("delay", 0))
            if request.arguments.get("fail"):
                error = Boom(request.id)
                self.errors[request.id] = error
                raise error
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(request.id)
            raise
        finally:
            self.in_flight -= 1
            self.ends[request.id] = anyio.current_time()
        return ToolOutput(id=request.id, name=request.name, content=request.id.upper())


def inv(
    id: str,
    delay: float = 0,
    *depends_on: str,
    fail: bool = False,
    name: str = "work",
    **arguments: Any,
) -> ToolInvocation:
    return ToolInvocation(
        id=id,
        name=name,
        arguments={"delay": delay, "fail": fail, **arguments},
        depends_on=depends_on,
    )


# --- scheduling --------------------------------------------------------------------------------


async def test_an_invocation_starts_when_its_own_dependency_ends_not_with_the_slowest_one() -> None:
    router = Recorder()
    t0 = anyio.current_time()
    outputs = await ParallelToolRouter(router, limit=5)(
        [inv("slow", 10), inv("a", 1), inv("b", 2, "a"), inv("c", 1, "a", "b")]
    )
    assert [o.content for o in outputs] == ["SLOW", "A", "B", "C"]
    assert {k: v - t0 for k, v in router.starts.items()} == {"slow": 0, "a": 0, "b": 1, "c": 3}
    assert anyio.current_time() - t0 == 10  # waves would take 10 + 2 + 1


@st.composite
def dags(draw: st.DrawFn, max_size: int = 18) -> list[ToolInvocation]:
    """Random DAGs: each node depends on some earlier nodes; the batch order is then shuffled."""
    size = draw(st.integers(1, max_size))
    nodes = []
    for n in range(size):
        delay = draw(st.integers(0, 6))
        deps = draw(st.sets(st.integers(0, n - 1), max_size=3)) if n else set()
        nodes.append(inv(f"n{n}", delay, *(f"n{d}" for d in sorted(deps))))
    order = draw(st.permutations(nodes))
    return list(order)


def ready_time(invocation: ToolInvocation, router: Recorder, t0: float) -> float:
    return max((router.ends[d] for d in invocation.depends_on), default=t0)


@settings(deadline=None, max_examples=60)
@given(batch=dags())
async def test_with_room_for_all_every_start_is_the_instant_its_last_dependency_ends(
    batch: list[ToolInvocation],
) -> None:
    router = Recorder()
    t0 = anyio.current_time()
    outputs = await ParallelToolRouter(router, limit=len(batch))(batch)
    assert [o.id for o in outputs] == [i.id for i in batch]
    for invocation in batch:
        assert router.starts[invocation.id] == ready_time(invocation, router, t0)
    makespan = anyio.current_time() - t0
    assert makespan == ToolGraph(batch).critical_path(lambda i: i.arguments["delay"])
    assert router.in_flight == 0


@settings(deadline=None, max_examples=60)
@given(batch=dags(), limit=st.integers(1, 4))
async def test_under_a_limit_no_ready_invocation_waits_while_a_slot_is_free(
    batch: list[ToolInvocation], limit: int
) -> None:
    router = Recorder()
    t0 = anyio.current_time()
    await ParallelToolRouter(router, limit=limit)(batch)
    assert router.peak <= limit
    instants = sorted({t0, *router.starts.values(), *router.ends.values()})
    for invocation in batch:
        ready, start = ready_time(invocation, router, t0), router.starts[invocation.id]
        assert start >= ready
        for t in instants:
            if ready <= t < start:  # it waited: every slot was busy all along
                running = sum(1 for i in batch if router.starts[i.id] <= t < router.ends[i.id])
                assert running == limit, (invocation.id, t)


async def test_a_graph_of_1000_calls_runs_in_at_most_limit_tasks() -> None:
    rng = random.Random(7)
    batch = [
        inv(f"n{n}", rng.randint(1, 5), *{f"n{rng.randrange(n)}" for _ in range(2) if n})
        for n in range(1000)
    ]
    baseline = live_tasks()
    peak_tasks = 0

    class Counting(Recorder):
        async def call(self, request: ToolInvocation) -> ToolOutput:
            nonlocal peak_tasks
            peak_tasks = max(peak_tasks, live_tasks())
            return await super().call(request)

    router = Counting()
    t0 = anyio.current_time()
    await ParallelToolRouter(router, limit=10)(batch)
    assert router.peak <= 10
    assert peak_tasks <= baseline + 10
    assert len(router.started) == 1000
    assert anyio.current_time() - t0 >= ToolGraph(batch).critical_path(
        lambda i: i.arguments["delay"]
    )


async def test_a_batch_without_dependencies_runs_as_before_and_passes_references_through() -> None:
    router = Recorder()
    literal = {"$output": "a"}
    await ParallelToolRouter(router)([inv("a", 1), inv("b", 1, value=literal)])
    assert router.starts == {"a": router.starts["a"], "b": router.starts["a"]}
    assert router.arguments["b"]["value"] == literal


async def test_a_sequential_tool_stays_a_barrier_in_a_batch_with_dependencies() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=5, sequential=lambda name: name == "seq")
    t0 = anyio.current_time()
    await parallel(
        [inv("a", 2), inv("b", 1), inv("s", 1, name="seq"), inv("c", 1), inv("d", 1, "c")]
    )
    starts = {k: v - t0 for k, v in router.starts.items()}
    assert starts == {"a": 0, "b": 0, "s": 2, "c": 3, "d": 4}


# --- arguments from earlier outputs ------------------------------------------------------------


async def test_an_output_reference_is_replaced_by_that_output_anywhere_in_the_arguments() -> None:
    @tool
    async def search(query: str) -> list[str]:
        """Searches."""
        return [f"{query}-1", f"{query}-2"]

    @tool
    async def join(parts: list[list[str]], sep: dict[str, str]) -> str:
        """Joins."""
        return sep["by"].join(item for part in parts for item in part)

    router = ToolRouter([search, join])
    outputs = await ParallelToolRouter(router)(
        [
            ToolInvocation(id="s1", name="search", arguments={"query": "x"}),
            ToolInvocation(id="s2", name="search", arguments={"query": "y"}),
            ToolInvocation(
                id="j",
                name="join",
                arguments={
                    "parts": [{"$output": "s1"}, {"$output": "s2"}],
                    "sep": {"by": "+"},
                },
                depends_on=("s1", "s2"),
            ),
        ]
    )
    assert outputs[2].content == "x-1+x-2+y-1+y-2"


async def test_a_reference_to_an_undeclared_dependency_is_refused_before_anything_runs() -> None:
    router = Recorder()
    batch = [inv("a"), inv("b", 0, "a"), inv("c", 0, "b", value={"$output": "a"})]
    with pytest.raises(ValueError, match=r"'c'.*output of 'a'.*add 'a' to depends_on"):
        await ParallelToolRouter(router)(batch)
    assert router.started == []


# --- bad graphs are refused before anything runs -----------------------------------------------


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([inv("a", 0, "a")], r"cycle.*'a' -> 'a'"),
        ([inv("a", 0, "b"), inv("b", 0, "a")], r"cycle.*'a' -> 'b' -> 'a'"),
        (
            [inv("x"), inv("a", 0, "c"), inv("b", 0, "a", "x"), inv("c", 0, "b")],
            r"cycle.*'a' -> 'c' -> 'b' -> 'a'",
        ),
        ([inv("a"), inv("b", 0, "zz")], r"'b' \(tool 'work'\) depends on 'zz'.*'a', 'b'"),
        ([inv("a"), inv("a", 0, "a")], r"two invocations have the id 'a'"),
    ],
    ids=["itself", "two", "three", "unknown", "duplicate"],
)
async def test_a_cycle_an_unknown_or_a_duplicate_id_raises_before_anything_runs(
    batch: list[ToolInvocation], message: str
) -> None:
    router = Recorder()
    with pytest.raises(ValueError, match=message):
        await ParallelToolRouter(router)([inv("first"), *batch])
    with pytest.raises(ValueError, match=message):
        ToolGraph(batch)
    assert router.started == []


async def test_a_cycle_through_a_sequential_tool_is_refused_and_explained() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, sequential=lambda name: name == "seq")
    with pytest.raises(ValueError, match=r"cycle.*sequential tool waits for every invocation"):
        await parallel([inv("a", 0, "b"), inv("s", name="seq"), inv("b")])
    assert router.started == []


# --- failures ----------------------------------------------------------------------------------


async def test_fail_fast_never_starts_the_dependents_of_a_failed_call() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, policy=JoinPolicy.FAIL_FAST)
    batch = [inv("a", 1, fail=True), inv("b", 1, "a"), inv("long", 5), inv("c", 0, "b")]
    with pytest.raises(Boom) as caught:
        await parallel(batch)
    assert caught.value is router.errors["a"]
    assert router.started == ["a", "long"]
    assert router.cancelled == ["long"]
    await anyio.sleep(10)
    await wait_all_tasks_blocked()
    assert router.started == ["a", "long"]
    assert router.in_flight == 0


async def test_isolate_gives_dependents_of_a_failed_call_an_error_naming_it() -> None:
    router = Recorder()
    outputs = await ParallelToolRouter(router)(
        [inv("a", 1, fail=True), inv("b", 1, "a"), inv("c", 1, "b"), inv("d", 2)]
    )
    assert outputs[0].content == "tool 'work' failed: Boom: a"
    assert outputs[1] == ToolOutput(
        id="b",
        name="work",
        content="tool 'work' (id 'b') did not run: it depends on 'a' (tool 'work'), which failed",
        is_error=True,
    )
    assert outputs[2].is_error
    assert outputs[2].content.startswith("tool 'work' (id 'c') did not run: it depends on 'a'")
    assert outputs[3].content == "D"
    assert sorted(router.started) == ["a", "d"]


async def test_join_all_raises_the_earliest_real_failure_and_records_the_skipped_ones() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, policy=JoinPolicy.JOIN_ALL)
    batch = [inv("b", 0, "a"), inv("a", 2, fail=True), inv("c", 1, fail=True), inv("d", 3)]
    with pytest.raises(Boom) as caught:
        await parallel(batch)
    error = caught.value
    assert error is router.errors["a"]  # b comes first, but it never ran: a is the cause
    outcomes = error.tool_outcomes  # type: ignore[attr-defined]
    assert isinstance(outcomes[0], DependencyFailed)
    assert outcomes[0].dependency == "a"
    assert outcomes[0].__cause__ is router.errors["a"]
    assert outcomes[1] is router.errors["a"]
    assert outcomes[2] is router.errors["c"]
    assert outcomes[3].content == "D"
    assert sorted(router.started) == ["a", "c", "d"]


async def test_a_timed_out_dependency_stops_its_dependents() -> None:
    router = Recorder()
    outputs = await ParallelToolRouter(router, tool_timeout=1.5)([inv("a", 2), inv("b", 0, "a")])
    assert outputs[0].content == "tool 'work' timed out after 1.5 seconds"
    assert "did not run: it depends on 'a'" in outputs[1].content
    assert router.started == ["a"]


async def test_join_all_with_a_timeout_names_elapsed_as_the_cause() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, policy=JoinPolicy.JOIN_ALL, tool_timeout=1)
    with pytest.raises(Elapsed) as caught:
        await parallel([inv("a", 2), inv("b", 0, "a")])
    assert isinstance(caught.value.tool_outcomes[1], DependencyFailed)  # type: ignore[attr-defined]


async def test_cancelling_a_graph_cancels_what_runs_and_starts_nothing_more() -> None:
    router = Recorder()
    t0 = anyio.current_time()
    with anyio.move_on_after(1.5):
        await ParallelToolRouter(router)([inv("a", 1), inv("b", 2, "a"), inv("c", 1, "b")])
    assert anyio.current_time() - t0 == 1.5
    assert router.started == ["a", "b"]
    assert router.cancelled == ["b"]
    await anyio.sleep(10)
    await wait_all_tasks_blocked()
    assert router.started == ["a", "b"]
    assert router.in_flight == 0


# --- ToolGraph ---------------------------------------------------------------------------------


async def test_a_tool_graph_tells_its_levels_critical_path_and_neighbours() -> None:
    graph = ToolGraph([inv("a", 1), inv("b", 5), inv("c", 2, "a"), inv("d", 1, "b", "c")])
    assert [[i.id for i in level] for level in graph.levels()] == [["a", "b"], ["c"], ["d"]]
    assert graph.critical_path(lambda i: i.arguments["delay"]) == 6
    assert graph.dependencies("d") == ["b", "c"]
    assert graph.dependents("a") == ["c"]
    assert graph.ids == ["a", "b", "c", "d"]
    assert len(graph) == 4
    assert repr(graph) == "ToolGraph(4 invocations, 3 dependencies)"
    with pytest.raises(KeyError, match="no invocation with the id 'z'"):
        graph.dependencies("z")
    with pytest.raises(TypeError, match="made of ToolInvocation"):
        ToolGraph(["a"])  # type: ignore[list-item]


async def test_a_tool_graph_runs_through_a_router() -> None:
    router = Recorder()
    graph = ToolGraph([inv("a", 1), inv("b", 1, "a")])
    t0 = anyio.current_time()
    outputs = await graph.run(router, limit=2)
    assert [o.content for o in outputs] == ["A", "B"]
    assert router.starts["b"] - t0 == 1
