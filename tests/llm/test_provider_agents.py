"""Agents on real provider adapters, end to end over HTTP with the real SDK clients.

A local server speaks each protocol; these tests run on the real clock and never sleep to
synchronise: the server answers each request from the conversation it receives.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy.llm import Agent
from towerpy.tools import ToolRouter, tool

from .fake_provider import FakeProvider, Recorded, Reply
from .provider_kit import KITS, Kit, anthropic_message

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.param
    return kit


def tool_results(kit: Kit, recorded: Recorded) -> list[tuple[str, str, bool]]:
    """The tool results the model received last, as ``(call id, content, is_error)``."""
    messages = recorded.body["messages"]
    if kit.name == "openai":
        results = []
        for message in reversed(messages):
            if message["role"] != "tool":
                break
            content = message["content"]
            results.append((message["tool_call_id"], content, content.startswith("Error: ")))
        return results[::-1]
    last = messages[-1]
    assert last["role"] == "user"
    return [
        (block["tool_use_id"], block.get("content", ""), block.get("is_error", False))
        for block in last["content"]
        if block["type"] == "tool_result"
    ]


def weather_tools(arrived: list[str], both_in: anyio.Event) -> ToolRouter:
    @tool
    async def get_weather(city: str) -> dict[str, Any]:
        """Current weather in a city."""
        if city == "Atlantis":
            raise LookupError(f"no weather station in {city}")
        arrived.append(city)
        if len(arrived) == 2:
            both_in.set()
        await both_in.wait()  # returns only when both calls run at once
        return {"city": city, "temp": 21}

    @tool
    def add(a: int, b: int) -> int:
        """Adds two numbers (a plain function: runs in a worker thread)."""
        return a + b

    return ToolRouter([get_weather, add])


async def test_an_agent_runs_parallel_tool_calls_end_to_end_over_http(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    def final(recorded: Recorded) -> Reply:
        results = tool_results(provider, recorded)
        assert [call_id for call_id, _, _ in results] == ["c1", "c2", "c3", "c4"]
        assert [is_error for _, _, is_error in results] == [False, False, True, False]
        assert "no weather station in Atlantis" in results[2][1]
        assert results[3][1] == "5"
        return provider.text("Oslo and Rome are at 21; Atlantis has no station; 2 + 3 = 5.")

    fake_provider.queue(
        provider.tool_calls(
            [
                ("c1", "get_weather", '{"city": "Oslo"}'),
                ("c2", "get_weather", '{"city": "Rome"}'),
                ("c3", "get_weather", '{"city": "Atlantis"}'),
                ("c4", "add", '{"a": 2, "b": 3}'),
            ],
            usage=(120, 40),
        ),
        final,
    )
    arrived: list[str] = []
    model = provider.model(fake_provider)
    agent = Agent(model, tools=weather_tools(arrived, anyio.Event()), system="Be brief.")
    async with model.client:
        with anyio.fail_after(30):
            result = await agent.run("Weather in Oslo, Rome and Atlantis, and 2 + 3?")
    assert result.steps == 2
    assert result.output == "Oslo and Rome are at 21; Atlantis has no station; 2 + 3 = 5."
    assert sorted(arrived) == ["Oslo", "Rome"]
    first, second = fake_provider.requests
    assert sorted(provider.tool_names(first)) == ["add", "get_weather"]
    if provider.name == "anthropic":
        assert second.body["system"] == "Be brief."
        # the whole batch answers in ONE user message, is_error on the failed call only
        assert [m["role"] for m in second.body["messages"]] == ["user", "assistant", "user"]
        blocks = second.body["messages"][-1]["content"]
        assert [b["type"] for b in blocks] == ["tool_result"] * 4
        assert [b.get("is_error", False) for b in blocks] == [False, False, True, False]
    else:
        roles = [m["role"] for m in second.body["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "tool", "tool", "tool"]
        assert all("name" not in m for m in second.body["messages"] if m["role"] == "tool")


async def test_malformed_arguments_reach_the_model_as_an_error_and_the_next_turn_succeeds(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    if provider.name == "openai":
        broken = provider.tool_calls([("c1", "get_weather", '{"city": "Os')])
    else:  # Anthropic's real failure mode: a tool call cut short by max_tokens
        broken = Reply(
            body=anthropic_message(
                None, [("c1", "get_weather", {"city": "Os"})], stop_reason="max_tokens"
            )
        )

    def corrected(recorded: Recorded) -> Reply:
        ((call_id, content, is_error),) = tool_results(provider, recorded)
        assert (call_id, is_error) == ("c1", True)
        # OpenAI sent broken text; Anthropic's call was cut off: the model is told which
        told = "not a JSON object" if provider.name == "openai" else "were cut off"
        assert told in content
        return provider.tool_calls([("c2", "get_weather", '{"city": "Oslo"}')])

    fake_provider.queue(broken, corrected, provider.text("21 in Oslo."))
    calls: list[str] = []

    @tool
    async def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return "21"

    model = provider.model(fake_provider)
    async with model.client:
        result = await Agent(model, tools=ToolRouter([get_weather])).run("Weather in Oslo?")
    assert calls == ["Oslo"]  # never run with the broken arguments
    assert (result.steps, result.output) == (3, "21 in Oslo.")
    if provider.name == "openai":
        # the model's own broken text was replayed verbatim
        replayed = fake_provider.requests[1].body["messages"][1]["tool_calls"][0]
        assert replayed["function"]["arguments"] == '{"city": "Os'
