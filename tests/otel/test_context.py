"""The span context reaches tool tasks and worker threads, on asyncio and trio alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from towerpy.llm import Agent, Message, ScriptedModel, ToolCall
from towerpy.testing import wait_all_tasks_blocked
from towerpy.tools import ToolRouter, tool

if TYPE_CHECKING:
    from .conftest import Telemetry

pytestmark = pytest.mark.anyio


def asks(*names: str) -> Message:
    return Message.assistant(
        tool_calls=[ToolCall(id=f"{name}-1", name=name, arguments={}) for name in names]
    )


async def test_a_sync_tool_runs_in_its_execute_tool_span_in_the_worker_thread(
    telemetry: Telemetry,
) -> None:
    own = telemetry.tracer_provider.get_tracer("the tool's own code")
    threads: list[bool] = []

    @tool
    def convert() -> float:
        """Converts."""
        import threading

        threads.append(threading.current_thread() is not threading.main_thread())
        with own.start_as_current_span("inside convert"):
            return 69.8

    @tool
    async def echo() -> str:
        """Echoes."""
        with own.start_as_current_span("inside echo"):
            return "echo"

    agent = Agent(
        ScriptedModel([asks("convert", "echo"), Message.assistant("ok")]),
        tools=ToolRouter([convert, echo]),
    )
    await agent.run("go")
    assert threads == [True]
    spans = {span.name: span for span in telemetry.finished()}
    assert spans["inside convert"].parent == spans["execute_tool convert"].context
    assert spans["inside echo"].parent == spans["execute_tool echo"].context
    assert spans["execute_tool convert"].parent == spans["invoke_agent"].context


async def test_tasks_a_tool_starts_inherit_its_span(telemetry: Telemetry) -> None:
    own = telemetry.tracer_provider.get_tracer("the tool's own code")

    @tool
    async def fan() -> int:
        """Fans out."""

        async def part(n: int) -> None:
            with own.start_as_current_span(f"part {n}"):
                await anyio.sleep(n)

        async with anyio.create_task_group() as group:
            for n in (1, 2):
                group.start_soon(part, n)
        return 2

    await Agent(ScriptedModel([asks("fan"), Message.assistant("ok")]), tools=ToolRouter([fan])).run(
        "go"
    )
    spans = {span.name: span for span in telemetry.finished()}
    assert spans["part 1"].parent == spans["execute_tool fan"].context
    assert spans["part 2"].parent == spans["execute_tool fan"].context


async def test_a_run_leaves_the_caller_s_context_as_it_was(telemetry: Telemetry) -> None:
    outer = telemetry.tracer_provider.get_tracer("the caller")
    with outer.start_as_current_span("request handler") as handler:
        await Agent(ScriptedModel([Message.assistant("hi")])).run("go")
        assert trace.get_current_span() is handler
    assert trace.get_current_span() is trace.INVALID_SPAN
    spans = {span.name: span for span in telemetry.finished()}
    assert spans["invoke_agent"].parent == spans["request handler"].context


async def test_a_cancelled_run_ends_every_span_it_opened(telemetry: Telemetry) -> None:
    @tool
    async def slow() -> str:
        """Takes its time."""
        await anyio.sleep(100)
        return "late"

    agent = Agent(ScriptedModel([asks("slow")]), tools=ToolRouter([slow]))
    async with anyio.create_task_group() as group:
        group.start_soon(agent.run, "go")
        await wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    names = sorted(span.name for span in telemetry.finished())
    assert names == ["chat", "execute_tool slow", "invoke_agent"]
    # a cancellation is not an error of the tool
    assert all(span.status.status_code is StatusCode.UNSET for span in telemetry.finished())
    in_flight = telemetry.values("towerpy.in_flight")
    assert set(in_flight.values()) == {0}
    assert trace.get_current_span() is trace.INVALID_SPAN
