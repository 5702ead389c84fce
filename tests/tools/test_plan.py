"""plan_tool: a model sends dependent tool calls as one plan; it runs as a ToolGraph."""

from __future__ import annotations

import json

import anyio
import pytest

from towerpy.llm import Agent, ChatRequest, Message, ScriptedModel, ToolCall
from towerpy.tools import PlanStep, ToolInvocation, ToolRouter, plan_tool, tool

pytestmark = pytest.mark.anyio

started: dict[str, float] = {}


@tool
async def search(query: str) -> list[str]:
    """Searches the web."""
    started[f"search {query}"] = anyio.current_time()
    await anyio.sleep(len(query))
    return [f"{query} result"]


@tool
async def summarize(texts: list[list[str]]) -> str:
    """Summarizes texts."""
    started["summarize"] = anyio.current_time()
    return " | ".join(text for group in texts for text in group)


def router() -> ToolRouter:
    tools = ToolRouter([search, summarize])
    tools.register(plan_tool(tools))
    return tools


def plan(*steps: dict[str, object]) -> ToolInvocation:
    return ToolInvocation(id="p", name="run_plan", arguments={"steps": list(steps)})


async def test_a_plan_runs_each_step_once_its_dependencies_are_done() -> None:
    started.clear()
    t0 = anyio.current_time()
    output = await router()(
        plan(
            {"id": "a", "tool": "search", "arguments": {"query": "ab"}},
            {"id": "b", "tool": "search", "arguments": {"query": "abcd"}},
            {
                "id": "s",
                "tool": "summarize",
                "arguments": {"texts": [{"$output": "a"}, {"$output": "b"}]},
                "depends_on": ["a", "b"],
            },
        )
    )
    assert output.content == [
        {"id": "a", "tool": "search", "output": ["ab result"], "is_error": False},
        {"id": "b", "tool": "search", "output": ["abcd result"], "is_error": False},
        {"id": "s", "tool": "summarize", "output": "ab result | abcd result", "is_error": False},
    ]
    assert {k: v - t0 for k, v in started.items()} == {
        "search ab": 0,
        "search abcd": 0,
        "summarize": 4,
    }


async def test_a_bad_plan_fails_as_a_whole_with_a_message_the_model_can_use() -> None:
    tools = router()
    with pytest.raises(ValueError, match=r"cycle.*'a' -> 'b' -> 'a'"):
        await tools(
            plan(
                {"id": "a", "tool": "search", "arguments": {"query": "x"}, "depends_on": ["b"]},
                {"id": "b", "tool": "search", "arguments": {"query": "y"}, "depends_on": ["a"]},
            )
        )
    with pytest.raises(ValueError, match="add 'a' to depends_on"):
        await tools(
            plan(
                {"id": "a", "tool": "search", "arguments": {"query": "x"}},
                {"id": "s", "tool": "summarize", "arguments": {"texts": [{"$output": "a"}]}},
            )
        )


async def test_a_model_sends_a_plan_and_reads_every_steps_output() -> None:
    def answer(request: ChatRequest) -> Message:
        results = [m for m in request.messages if m.role == "tool"]
        if results:
            steps = json.loads(results[0].content or "[]")
            return Message.assistant(f"{steps[-1]['output']} ({results[0].is_error})")
        steps = [
            PlanStep(id="a", tool="search", arguments={"query": "x"}),
            PlanStep(
                id="s",
                tool="summarize",
                arguments={"texts": [{"$output": "a"}]},
                depends_on=["a"],
            ),
            PlanStep(id="bad", tool="nope", depends_on=["s"]),
        ]
        arguments = {"steps": [step.model_dump() for step in steps]}
        return Message.assistant(
            tool_calls=[ToolCall(id="1", name="run_plan", arguments=arguments)]
        )

    result = await Agent(ScriptedModel([answer, answer]), tools=router()).run("go")
    assert result.output.startswith("no tool named 'nope'")
    assert result.output.endswith("(False)")  # the plan ran; one of its steps failed
    assert "run_plan" in [spec.name for spec in router().specs]
