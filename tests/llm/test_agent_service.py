"""An Agent is a Service of whole runs: layers wrap runs, and tool bounds span runs."""

from __future__ import annotations

import anyio
import pytest

from towerpy import ConcurrencyLimiter, Elapsed, MapResponse, Service, ServiceBuilder
from towerpy.llm import Agent, AgentResult, ChatRequest, Message, ScriptedModel, ToolCall
from towerpy.testing import wait_all_tasks_blocked
from towerpy.tools import ToolRouter, tool
from towerpy.workflow import Sequential

from ..tools.test_parallel import live_tasks

pytestmark = pytest.mark.anyio


class Tools:
    """A ``slow`` tool that records how many of its calls run at once, and which were cancelled."""

    def __init__(self, seconds: float = 1) -> None:
        self.in_flight = 0
        self.peak = 0
        self.started = 0
        self.cancelled = 0

        @tool
        async def slow(n: int) -> int:
            """Takes a while."""
            self.started += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await anyio.sleep(seconds)
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise
            finally:
                self.in_flight -= 1
            return n

        self.router = ToolRouter([slow])


def asks_for(calls: int) -> ScriptedModel:
    """A model that asks for ``calls`` slow tool calls, then answers with how many came back."""

    def answer(request: ChatRequest) -> Message:
        results = [m for m in request.messages if m.role == "tool"]
        if results:
            return Message.assistant(f"{len(results)} results")
        return Message.assistant(
            tool_calls=[ToolCall(id=f"c{n}", name="slow", arguments={"n": n}) for n in range(calls)]
        )

    return ScriptedModel([answer] * 100, latency=1)


async def test_calling_an_agent_runs_it_as_run_does() -> None:
    agent = Agent(ScriptedModel([Message.assistant("hi")] * 2))
    assert isinstance(agent, Service)
    by_call = await agent("hello")
    by_run = await agent.run("hello")
    assert isinstance(by_call, AgentResult)
    assert by_call == by_run
    assert by_call.output == "hi"


async def test_a_concurrency_limit_around_an_agent_is_a_quota_of_whole_runs() -> None:
    tools = Tools()
    agent = Agent(asks_for(2), tools=tools.router)
    quota = ServiceBuilder().concurrency_limit(2).service(agent)
    ends: list[float] = []
    t0 = anyio.current_time()

    async def one() -> None:
        await quota("go")
        ends.append(anyio.current_time() - t0)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert ends == [3, 3, 6]  # a run: model 1 s, tools 1 s, model 1 s; the third waited
    assert tools.peak == 4  # two runs at once, two tools each


async def test_a_timeout_around_an_agent_cancels_the_whole_run_and_its_tools() -> None:
    tools = Tools(seconds=100)
    model = asks_for(3)
    agent = ServiceBuilder().timeout(30).service(Agent(model, tools=tools.router))
    baseline = live_tasks()
    t0 = anyio.current_time()
    with pytest.raises(Elapsed):
        await agent("go")
    assert anyio.current_time() - t0 == 30
    assert (tools.started, tools.cancelled, tools.in_flight) == (3, 3, 0)
    await anyio.sleep(200)
    await wait_all_tasks_blocked()
    assert len(model.requests) == 1  # the model was never asked again
    assert live_tasks() == baseline


async def test_tool_limit_bounds_each_answer_and_shared_tool_limit_all_runs_together() -> None:
    async def peak_of(**options: object) -> int:
        tools = Tools()
        agent = Agent(asks_for(3), tools=tools.router, **options)  # type: ignore[arg-type]
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(agent, "go")
        return tools.peak

    assert await peak_of(tool_limit=2) == 6  # each of the three runs: 2 at once
    assert await peak_of(tool_limit=2, shared_tool_limit=4) == 4
    assert await peak_of(shared_tool_limit=1) == 1


async def test_a_shared_limiter_bounds_the_tools_of_several_agents() -> None:
    tools = Tools()
    limiter = ConcurrencyLimiter(2)
    first = Agent(asks_for(3), tools=tools.router, shared_tool_limit=limiter)
    second = Agent(asks_for(3), tools=tools.router, shared_tool_limit=limiter)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first, "go")
        tg.start_soon(second, "go")
    assert tools.peak == 2
    assert limiter.statistics().in_flight == 0


def test_a_bad_shared_tool_limit_is_refused_at_construction() -> None:
    model = ScriptedModel([Message.assistant("hi")])
    with pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        Agent(model, shared_tool_limit=0)
    with pytest.raises(TypeError, match="limiter must be a ConcurrencyLimiter"):
        Agent(model, shared_tool_limit="4")  # type: ignore[arg-type]


async def test_agents_are_steps_of_a_workflow() -> None:
    researcher = Agent(ScriptedModel([Message.assistant("notes on Oslo")]))

    def write(request: ChatRequest) -> Message:
        return Message.assistant(f"article from: {request.messages[-1].content}")

    writer = Agent(ScriptedModel([write]))
    flow = Sequential(
        MapResponse(researcher, lambda result: result.output),  # the answer is the next prompt
        MapResponse(writer, lambda result: result.output),
    )
    assert await flow("write about Oslo") == "article from: notes on Oslo"
