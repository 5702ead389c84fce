"""AgentPool: per-agent quotas, a default quota and one global limit, with statistics."""

from __future__ import annotations

from typing import Any, Self

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import ConcurrencyLimiter, Service
from towerpy.llm import Agent, AgentPool, AgentResult, AgentStatistics, Message, ScriptedModel
from towerpy.testing import wait_all_tasks_blocked
from towerpy.workflow import Parallel

pytestmark = pytest.mark.anyio


class Fake(Service[Any, AgentResult]):
    """An agent whose prompt ``"id:seconds[:fail]"`` says how long its run takes."""

    def __init__(self, name: str, spans: dict[str, tuple[str, float, float]]) -> None:
        self.name = name
        self.spans = spans
        self.entered = 0

    async def call(self, request: Any) -> AgentResult:
        id, seconds, *fail = str(request).split(":")
        start = anyio.current_time()
        try:
            await anyio.sleep(float(seconds))
        finally:
            self.spans[id] = (self.name, start, anyio.current_time())
        if fail:
            raise RuntimeError(id)
        return AgentResult(output=f"{self.name} did {id}", steps=1)

    async def __aenter__(self) -> Self:
        self.entered += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.entered -= 1


def running(spans: dict[str, tuple[str, float, float]], t: float, agent: str | None) -> int:
    return sum(1 for name, s, e in spans.values() if s <= t < e and agent in (None, name))


@settings(deadline=None, max_examples=60)
@given(
    quotas=st.lists(st.one_of(st.none(), st.integers(1, 3)), min_size=1, max_size=4),
    default=st.one_of(st.none(), st.integers(1, 3)),
    total=st.one_of(st.none(), st.integers(1, 5)),
    runs=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 3)), max_size=16),
)
async def test_quotas_hold_and_no_run_waits_while_both_its_bounds_have_room(
    quotas: list[int | None],
    default: int | None,
    total: int | None,
    runs: list[tuple[int, int, int]],
) -> None:
    spans: dict[str, tuple[str, float, float]] = {}
    pool = AgentPool(total, default_quota=default)
    names = [f"agent{n}" for n in range(len(quotas))]
    for name, quota in zip(names, quotas, strict=True):
        pool.add(name, Fake(name, spans), max_concurrent=quota)
    t0 = anyio.current_time()
    arrivals: dict[str, tuple[str, float]] = {}

    async def one(id: str, name: str, seconds: int, arrival: int) -> None:
        await anyio.sleep(arrival)
        arrivals[id] = (name, anyio.current_time())
        result = await pool.run(name, f"{id}:{seconds}")
        assert result.output == f"{name} did {id}"

    async with anyio.create_task_group() as tg:
        for n, (agent, seconds, arrival) in enumerate(runs):
            tg.start_soon(one, f"r{n}", names[agent % len(names)], seconds, arrival)

    assert sorted(spans) == sorted(arrivals)
    instants = sorted({t0, *(s for _, s, _ in spans.values()), *(e for *_, e in spans.values())})
    for name, quota in zip(names, quotas, strict=True):
        limit = quota if quota is not None else default
        for t in instants:
            assert limit is None or running(spans, t, name) <= limit
    for t in instants:
        assert total is None or running(spans, t, None) <= total
    for id, (name, arrived) in arrivals.items():
        start = spans[id][1]
        limit = quotas[names.index(name)] or default
        for t in instants:
            if arrived <= t < start:  # it waited: its quota or the global limit was full
                agent_full = limit is not None and running(spans, t, name) == limit
                pool_full = total is not None and running(spans, t, None) == total
                assert agent_full or pool_full, (id, t)
    stats = pool.statistics()
    assert sum(s.completed for s in stats.values()) == len(runs)
    assert all((s.running, s.waiting, s.failed) == (0, 0, 0) for s in stats.values())
    assert pool.limiter is None or pool.limiter.statistics().in_flight == 0


async def test_statistics_show_each_agents_running_waiting_and_finished_runs() -> None:
    spans: dict[str, tuple[str, float, float]] = {}
    pool = AgentPool(3, default_quota=2)
    pool.add("researcher", Fake("researcher", spans))
    pool.add("writer", Fake("writer", spans), max_concurrent=1)
    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(pool.run, "researcher", f"r{n}:2")
        for n in range(2):
            tg.start_soon(pool.run, "writer", f"w{n}:1")
        await wait_all_tasks_blocked()
        assert pool.statistics() == {
            "researcher": AgentStatistics(2, running=2, waiting=1, completed=0, failed=0),
            "writer": AgentStatistics(1, running=1, waiting=1, completed=0, failed=0),
        }
        await anyio.sleep(1.5)
        assert pool.statistics()["writer"] == AgentStatistics(1, 1, 0, 1, 0)
        assert pool.limiter is not None
        assert pool.limiter.statistics().in_flight == 3  # r0, r1, w1: r2 waits for a quota
    with pytest.raises(RuntimeError, match="x"):
        await pool.run("writer", "x:1:fail")
    assert pool.statistics() == {
        "researcher": AgentStatistics(2, 0, 0, 3, 0),
        "writer": AgentStatistics(1, 0, 0, 2, 1),
    }


async def test_a_cancelled_run_gives_its_places_back() -> None:
    spans: dict[str, tuple[str, float, float]] = {}
    pool = AgentPool(1)
    pool.add("a", Fake("a", spans))
    with anyio.move_on_after(1):
        await pool.run("a", "r0:5")
    assert pool.statistics()["a"] == AgentStatistics(None, 0, 0, 0, 1)
    assert pool.limiter is not None
    assert pool.limiter.statistics().in_flight == 0
    assert (await pool.run("a", "r1:1")).output == "a did r1"


async def test_a_pool_runs_real_agents_and_its_agents_are_steps_of_workflows() -> None:
    def agent(text: str) -> Agent:
        return Agent(ScriptedModel([Message.assistant(text)] * 5, latency=1))

    pool = AgentPool(max_concurrent=2)
    pool.add("a", agent("from a"), max_concurrent=1)
    pool.add("b", agent("from b"))
    pool.add("c", agent("from c"))
    t0 = anyio.current_time()
    both = Parallel(pool["a"], pool["a"], pool["b"], pool["c"])
    results = await both("go")
    assert [r.output for r in results] == ["from a", "from a", "from b", "from c"]
    assert anyio.current_time() - t0 == 2  # four runs of 1 s, two at once


async def test_a_limiter_shares_the_global_limit_between_pools() -> None:
    spans: dict[str, tuple[str, float, float]] = {}
    limiter = ConcurrencyLimiter(1)
    first, second = AgentPool(limiter=limiter), AgentPool(limiter=limiter)
    first.add("a", Fake("a", spans))
    second.add("b", Fake("b", spans))
    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run, "a", "r0:1")
        tg.start_soon(second.run, "b", "r1:1")
    assert anyio.current_time() - t0 == 2


async def test_entering_the_pool_enters_every_agent() -> None:
    spans: dict[str, tuple[str, float, float]] = {}
    a, b = Fake("a", spans), Fake("b", spans)
    pool = AgentPool()
    assert pool.add("a", a) is pool["a"]
    pool.add("b", b)
    async with pool as entered:
        assert entered is pool
        assert (a.entered, b.entered) == (1, 1)
    assert (a.entered, b.entered) == (0, 0)
    assert pool.agent("a") is a
    assert list(pool) == ["a", "b"]
    assert "a" in pool
    assert len(pool) == 2


async def test_run_sync_inside_a_running_loop_says_to_await_run() -> None:
    pool = AgentPool()
    pool.add("a", Agent(ScriptedModel([Message.assistant("hi")])))
    with pytest.raises(RuntimeError, match=r"inside a running event loop.*await pool\.run"):
        pool.run_sync("a", "hello")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_sync_runs_one_agent_without_a_loop(backend: str) -> None:
    pool = AgentPool(1, default_quota=1)
    pool.add("a", Agent(ScriptedModel([Message.assistant("hi")] * 2)))
    assert pool.run_sync("a", "hello", backend=backend).output == "hi"
    assert pool.statistics()["a"].completed == 1


def test_bad_names_and_bounds_are_refused_clearly() -> None:
    pool = AgentPool()
    agent = Agent(ScriptedModel([Message.assistant("hi")]))
    pool.add("a", agent)
    with pytest.raises(ValueError, match="already has an agent named 'a'"):
        pool.add("a", agent)
    with pytest.raises(KeyError, match="no agent named 'b' in the pool; its agents: 'a'"):
        pool["b"]
    with pytest.raises(KeyError, match="no agent named 'b'"):
        pool.run_sync("b", "hello")
    with pytest.raises(ValueError, match="must not be empty"):
        pool.add("", agent)
    with pytest.raises(TypeError, match="name must be a str"):
        pool.add(1, agent)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an Agent"):
        pool.add("c", "agent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrent must be >= 1"):
        pool.add("c", agent, max_concurrent=0)
    with pytest.raises(ValueError, match="max_concurrent must be >= 1"):
        AgentPool(0)
    with pytest.raises(ValueError, match="default_quota must be >= 1"):
        AgentPool(default_quota=0)
    with pytest.raises(ValueError, match="not both"):
        AgentPool(2, limiter=ConcurrencyLimiter(2))
    with pytest.raises(TypeError, match="limiter must be a ConcurrencyLimiter"):
        AgentPool(limiter=2)  # type: ignore[arg-type]
