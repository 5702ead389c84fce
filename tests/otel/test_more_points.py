"""Streamed runs, named agents of a pool, and circuit breakers: the same telemetry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from opentelemetry.trace import StatusCode

from towerpy import CircuitOpen, ServiceBuilder, service_fn
from towerpy.llm import Agent, AgentPool, Message, RunFinished, ScriptedModel, ToolCall
from towerpy.tools import ToolRouter, tool

from .conftest import attrs
from .test_spans import tree

if TYPE_CHECKING:
    from .conftest import Telemetry

pytestmark = pytest.mark.anyio


@tool(concurrency_limit=1)
async def lookup(term: str) -> str:
    """Looks a term up."""
    await anyio.sleep(1)
    return term


def asking_twice() -> ScriptedModel:
    calls = [ToolCall(id=f"t{n}", name="lookup", arguments={"term": str(n)}) for n in (1, 2)]
    return ScriptedModel([Message.assistant(tool_calls=calls), Message.assistant("found both")])


async def test_a_streamed_run_has_the_spans_of_a_run(telemetry: Telemetry) -> None:
    agent = Agent(asking_twice(), tools=ToolRouter([lookup]))
    async with agent.run_stream("look both up") as events:
        finished = [event async for event in events if isinstance(event, RunFinished)]
    assert finished[0].result.output == "found both"
    # each tool call starts as soon as the model has streamed it: a child of that chat span
    assert tree(telemetry.finished()) == [
        "invoke_agent",
        "  chat",
        "    execute_tool lookup #t1",
        "    execute_tool lookup #t2",
        "  chat",
    ]
    # one permit for two lookups started together: one of them (trio picks which) waited 1 s
    waits = sorted(
        [dict(event.attributes or {}) for event in span.events]
        for span in telemetry.named("execute_tool lookup")
    )
    assert waits == [
        [],
        [
            {
                "towerpy.layer": "concurrency_limit",
                "towerpy.wait.reason": "permit",
                "towerpy.wait.seconds": 1.0,
            }
        ],
    ]
    (run,) = telemetry.named("invoke_agent")
    assert attrs(run)["gen_ai.operation.name"] == "invoke_agent"
    chats = telemetry.named("chat")
    assert [attrs(chat)["gen_ai.response.finish_reasons"] for chat in chats] == [
        ("tool_calls",),
        ("stop",),
    ]


async def test_an_agent_of_a_pool_is_named_in_its_spans(telemetry: Telemetry) -> None:
    pool = AgentPool(default_quota=2)
    pool.add("researcher", Agent(ScriptedModel([Message.assistant("found")])))
    pool.add(
        "writer",
        ServiceBuilder().timeout(60).service(Agent(ScriptedModel([Message.assistant("wrote")]))),
    )
    assert (await pool.run("researcher", "find")).output == "found"
    assert (await pool.run("writer", "write")).output == "wrote"
    names = [span.name for span in telemetry.finished() if span.name.startswith("invoke_agent")]
    assert names == ["invoke_agent researcher", "invoke_agent writer"]
    (researcher,) = telemetry.named("invoke_agent researcher")
    assert attrs(researcher)["gen_ai.agent.name"] == "researcher"


async def test_a_circuit_opening_is_counted_and_an_event(telemetry: Telemetry) -> None:
    async def down(request: int) -> int:
        raise ConnectionError("down")

    service = ServiceBuilder().circuit_breaker(2, recovery_time=5).service(service_fn(down))
    tracer = telemetry.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("calls") as span:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await service(1)
        with pytest.raises(CircuitOpen):
            await service(1)
        assert span.is_recording()
    assert telemetry.values("towerpy.circuit.opens") == {(("towerpy.layer", "circuit_breaker"),): 1}
    (finished,) = telemetry.finished()
    assert [(e.name, dict(e.attributes or {})) for e in finished.events] == [
        ("towerpy.circuit.open", {"towerpy.layer": "circuit_breaker", "towerpy.retry.delay": 5.0})
    ]
    assert finished.status.status_code is StatusCode.UNSET
