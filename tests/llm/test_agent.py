"""Agent: step → tools → step until done, bounded by max_steps; run_sync for scripts."""

from __future__ import annotations

import json
from typing import Any, Self

import anyio
import pytest

from towerpy import MaxStepsExceeded, Middleware, Service
from towerpy.llm import (
    Agent,
    AgentResult,
    ChatRequest,
    Message,
    ParallelToolsLayer,
    ScriptedModel,
    ToolCall,
)
from towerpy.tools import JoinPolicy, ToolRouter, tool

pytestmark = pytest.mark.anyio

ran: list[str] = []


@tool
async def weather(city: str) -> dict[str, object]:
    """Gets the current weather for a city."""
    ran.append(f"weather {city}")
    await anyio.sleep(2)
    return {"city": city, "celsius": 21}


@tool
async def population(city: str) -> int:
    """Gets a city's population."""
    ran.append(f"population {city}")
    await anyio.sleep(1)
    return {"Oslo": 709_000, "Lima": 10_000_000}[city]


@tool
def convert(celsius: float) -> float:
    """Converts Celsius to Fahrenheit."""
    ran.append(f"convert {celsius}")
    return celsius * 9 / 5 + 32


def call(id: str, name: str, **arguments: object) -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments)


def final_answer(request: ChatRequest) -> Message:
    results = {m.tool_call_id: m.content for m in request.messages if m.role == "tool"}
    return Message.assistant(f"results: {json.dumps(results, sort_keys=True)}")


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


async def test_the_agent_loops_through_several_tools_to_a_final_answer() -> None:
    model = ScriptedModel(
        [
            Message.assistant(
                tool_calls=[
                    call("c1", "weather", city="Oslo"),
                    call("c2", "population", city="Oslo"),
                    call("c3", "population", city="Lima"),
                ]
            ),
            Message.assistant("converting", tool_calls=[call("c4", "convert", celsius=21)]),
            final_answer,
        ]
    )
    agent = Agent(model, tools=ToolRouter([weather, population, convert]), system="be brief")
    result = await agent.run("How is Oslo?")
    assert isinstance(result, AgentResult)
    assert result.steps == 3
    assert result.output == (
        'results: {"c1": "{\\"city\\": \\"Oslo\\", \\"celsius\\": 21}", "c2": "709000", '
        '"c3": "10000000", "c4": "69.8"}'
    )
    roles = [m.role for m in result.messages]
    assert roles == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert result.messages[0] == Message.system("be brief")
    assert [m.tool_call_id for m in result.messages if m.role == "tool"] == ["c1", "c2", "c3", "c4"]
    assert anyio.current_time() == 2  # the three tools of the first answer ran together
    assert sorted(ran) == ["convert 21.0", "population Lima", "population Oslo", "weather Oslo"]
    specs = [weather.spec, population.spec, convert.spec]
    assert all(request.tools == specs for request in model.requests)
    assert result.usage is not None
    assert result.usage.output_tokens > 0


async def test_tools_run_by_a_parallel_tools_layer_are_not_run_twice() -> None:
    router = ToolRouter([population])
    model = ScriptedModel(
        [Message.assistant(tool_calls=[call("c1", "population", city="Lima")]), final_answer]
    )
    step = ParallelToolsLayer(router).layer(model)
    result = await Agent(step, tools=router).run("people in Lima?")
    assert ran == ["population Lima"]
    assert result.output == 'results: {"c1": "10000000"}'


async def test_past_max_steps_the_agent_raises_and_made_exactly_max_steps_calls() -> None:
    asking = Message.assistant(tool_calls=[call("c", "population", city="Oslo")])
    model = ScriptedModel([asking] * 10)
    agent = Agent(model, tools=ToolRouter([population]), max_steps=3)
    with pytest.raises(MaxStepsExceeded, match="after 3 model calls") as caught:
        await agent.run("loop forever")
    assert len(model.requests) == 3
    assert len(ran) == 2  # the third answer's tools are not run: nobody would read them
    assert caught.value.messages[-1].tool_calls[0].id == "c"


async def test_with_max_steps_one_a_direct_answer_is_fine() -> None:
    result = await Agent(ScriptedModel([Message.assistant("hi")]), max_steps=1).run("hello")
    assert (result.output, result.steps) == ("hi", 1)
    assert [m.role for m in result.messages] == ["user", "assistant"]


async def test_tool_errors_reach_the_model_and_it_can_recover() -> None:
    def recover(request: ChatRequest) -> Message:
        last = request.messages[-1]
        assert last.is_error
        assert last.content == "no tool named 'weathr'; known tools: 'weather'"
        return Message.assistant(tool_calls=[call("c2", "weather", city="Oslo")])

    model = ScriptedModel(
        [
            Message.assistant(tool_calls=[call("c1", "weathr", city="Oslo")]),
            recover,
            Message.assistant("21 degrees"),
        ]
    )
    result = await Agent(model, tools=ToolRouter([weather])).run("weather?")
    assert result.output == "21 degrees"
    assert result.steps == 3


async def test_the_agent_applies_its_tool_timeout_and_policy() -> None:
    model = ScriptedModel(
        [Message.assistant(tool_calls=[call("c1", "weather", city="Oslo")]), final_answer]
    )
    agent = Agent(model, tools=ToolRouter([weather]), tool_timeout=0.5)
    result = await agent.run("weather?")
    assert result.output == ('results: {"c1": "tool \'weather\' timed out after 0.5 seconds"}')
    strict = Agent(
        ScriptedModel([Message.assistant(tool_calls=[call("c1", "weather", city="X")])]),
        tools=ToolRouter([weather]),
        tool_timeout=0.5,
        policy=JoinPolicy.FAIL_FAST,
    )
    with pytest.raises(TimeoutError):
        await strict.run("weather?")


async def test_a_conversation_can_be_continued_without_a_second_system_message() -> None:
    agent = Agent(ScriptedModel([Message.assistant("one"), Message.assistant("two")]), system="sys")
    first = await agent.run("a")
    second = await agent.run([*first.messages, Message.user("b")])
    assert [m.content for m in second.messages] == ["sys", "a", "one", "b", "two"]


async def test_one_agent_runs_several_conversations_at_once() -> None:
    def answer(request: ChatRequest) -> Message:
        return Message.assistant(f"echo {request.messages[-1].content}")

    agent = Agent(ScriptedModel([answer] * 3, latency=1))
    outputs: list[str] = []

    async def run(text: str) -> None:
        outputs.append((await agent.run(text)).output)

    async with anyio.create_task_group() as tg:
        for text in "abc":
            tg.start_soon(run, text)
    assert sorted(outputs) == ["echo a", "echo b", "echo c"]
    assert anyio.current_time() == 1


async def test_run_sync_inside_a_running_loop_is_a_clear_error() -> None:
    agent = Agent(ScriptedModel([Message.assistant("hi")]))
    with pytest.raises(RuntimeError, match=r"inside a running event loop; use `await agent.run"):
        agent.run_sync("hello")


def test_run_sync_runs_the_agent_without_a_loop() -> None:
    agent = Agent(ScriptedModel([Message.assistant("hi")]))
    assert agent.run_sync("hello").output == "hi"


def test_run_sync_can_use_trio() -> None:
    agent = Agent(ScriptedModel([Message.assistant("hi")]))
    assert agent.run_sync("hello", backend="trio").output == "hi"


async def test_bad_prompts_are_refused() -> None:
    agent = Agent(ScriptedModel([]))
    with pytest.raises(ValueError, match="non-empty list of Message"):
        await agent.run([])
    with pytest.raises(TypeError, match="a list of Message"):
        await agent.run(["text"])  # type: ignore[list-item]


def test_bad_options_are_refused() -> None:
    model = ScriptedModel([])
    with pytest.raises(ValueError, match="max_steps must be >= 1, got 0"):
        Agent(model, max_steps=0)
    with pytest.raises(TypeError, match="max_steps must be an int >= 1, got str '3'"):
        Agent(model, max_steps="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="step service"):
        Agent(lambda request: request)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tool_limit must be >= 1"):
        Agent(model, tool_limit=0)
    with pytest.raises(TypeError, match="tools must be a ToolRouter"):
        Agent(model, tools=[])  # type: ignore[arg-type]


async def test_entering_the_agent_enters_its_step_service_and_tools() -> None:
    events: list[str] = []

    class Tracked(Middleware[Any, Any]):
        def __init__(self, inner: Service[Any, Any], label: str) -> None:
            super().__init__(inner)
            self.label = label

        async def call(self, request: Any) -> Any:
            return await self.inner(request)

        async def __aenter__(self) -> Self:
            events.append(f"enter {self.label}")
            return self

        async def __aexit__(self, *exc: object) -> None:
            events.append(f"exit {self.label}")

    step = Tracked(ScriptedModel([Message.assistant("hi")]), "step")
    router = ToolRouter([weather])
    tools = Tracked(router, "tools")
    async with Agent(step, tools=tools, catalog=router) as agent:
        assert (await agent.run("x")).output == "hi"
    assert events == ["enter step", "enter tools", "exit tools", "exit step"]


async def test_two_agents_sharing_a_token_bucket_share_one_budget() -> None:
    from towerpy import RateLimitLayer, ServiceBuilder, TokenBucket
    from towerpy.testing import InFlightProbe

    bucket = TokenBucket(1, per=2.0, burst=1)  # one model call every 2 s, for both agents
    probes = []

    def agent(city: str) -> Agent:
        probe = InFlightProbe(
            ScriptedModel(
                [Message.assistant(tool_calls=[call("c", "population", city=city)]), final_answer]
            )
        )
        probes.append(probe)
        step = ServiceBuilder().layer(RateLimitLayer(limiter=bucket)).service(probe)
        return Agent(step, tools=ToolRouter([population]))

    agents = [agent("Oslo"), agent("Lima")]
    results = []

    async def run(a: Agent) -> None:
        results.append(await a.run("people?"))

    async with anyio.create_task_group() as tg:
        for a in agents:
            tg.start_soon(run, a)
    starts = sorted(start for probe in probes for start, _ in probe.calls)
    assert starts == [0, 2, 4, 6]  # 4 model calls, one per 2 s across both agents
    assert sorted(r.output for r in results) == [
        'results: {"c": "10000000"}',
        'results: {"c": "709000"}',
    ]


def test_tools_wrapped_in_layers_need_the_router_as_catalog() -> None:
    from towerpy import ConcurrencyLimitLayer

    router = ToolRouter([weather])
    wrapped = ConcurrencyLimitLayer(2).layer(router)
    model = ScriptedModel([Message.assistant("hi")])
    with pytest.raises(TypeError, match="pass the ToolRouter inside it as catalog="):
        Agent(model, tools=wrapped)
    assert Agent(model, tools=wrapped, catalog=router).specs == [weather.spec]


async def test_tool_priority_starts_the_tool_calls_of_an_answer_by_priority() -> None:
    model = ScriptedModel(
        [
            Message.assistant(
                tool_calls=[
                    call("c1", "weather", city="Oslo"),
                    call("c2", "population", city="Lima"),
                    call("c3", "population", city="Oslo"),
                ]
            ),
            final_answer,
        ]
    )
    agent = Agent(
        model,
        tools=ToolRouter([weather, population]),
        tool_limit=1,
        tool_priority=lambda invocation: 1 if invocation.name == "population" else 0,
    )
    await agent.run("compare")
    assert ran == ["population Lima", "population Oslo", "weather Oslo"]
    with pytest.raises(TypeError, match="tool_priority must be a function"):
        Agent(model, tool_priority=1)  # type: ignore[arg-type]
