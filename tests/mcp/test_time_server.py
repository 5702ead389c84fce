"""The reference server mcp-server-time (from PyPI), listed and called from a towerpy Agent.

It runs as a subprocess over stdio (real time: ``real_clock``, bounded by kit.py's bounds).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from towerpy import InvalidToolArguments
from towerpy.llm import Agent, ChatRequest, Message, ScriptedModel, ToolCall
from towerpy.mcp import McpTools
from towerpy.tools import ToolRouter, tool

from .kit import CALL_BOUND, CONNECT_BOUND

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

# installed with the dev extra, next to this interpreter
SERVER = shutil.which("mcp-server-time", path=str(Path(sys.executable).parent))


GET_TIME = "time_get_current_time"


def time_server(**options: Any) -> McpTools:
    assert SERVER is not None, "mcp-server-time is not installed: pip install -e '.[dev]'"
    return McpTools.stdio(SERVER, ["--local-timezone", "UTC"], prefix="time", **options)


@tool
def shout(text: str) -> str:
    """Repeats the text in capitals."""
    return text.upper()


def answer(request: ChatRequest) -> Message:
    results = [m for m in request.messages if m.role == "tool"]
    return Message.assistant(" | ".join(f"{m.name}: {m.content}" for m in results))


async def test_an_agent_lists_and_calls_the_time_servers_tools() -> None:
    told: list[list[str]] = []

    def ask(request: ChatRequest) -> Message:
        told.append([spec.name for spec in request.tools])
        convert = {
            "source_timezone": "Europe/Paris",
            "time": "12:00",
            "target_timezone": "America/New_York",
        }
        return Message.assistant(
            tool_calls=[
                ToolCall(
                    id="1", name="time_get_current_time", arguments={"timezone": "Asia/Tokyo"}
                ),
                ToolCall(id="2", name="time_convert_time", arguments=convert),
                ToolCall(id="3", name="time_get_current_time", arguments={"timezone": "Mars/Base"}),
                ToolCall(id="4", name="shout", arguments={"text": "done"}),
            ]
        )

    with anyio.fail_after(CONNECT_BOUND + CALL_BOUND):
        async with time_server(timeout=5.0) as time_tools:
            assert time_tools.names == ["time_get_current_time", "time_convert_time"]
            agent = Agent(ScriptedModel([ask, answer]), tools=ToolRouter([*time_tools, shout]))
            result = await agent.run("what time is it in Tokyo?")
            with pytest.raises(InvalidToolArguments, match="timezone: field required"):
                await time_tools["time_get_current_time"]({})  # checked before it goes out

    assert told == [["time_get_current_time", "time_convert_time", "shout"]]
    assert result.steps == 2
    messages = {m.tool_call_id: m for m in result.messages if m.role == "tool"}
    tokyo, converted, mars = messages["1"], messages["2"], messages["3"]
    assert not tokyo.is_error
    assert '"timezone": "Asia/Tokyo"' in (tokyo.content or "")
    assert not converted.is_error
    assert "America/New_York" in (converted.content or "")
    assert '"time_difference": ' in (converted.content or "")  # -5h or -6h, as DST has it
    assert mars.is_error  # the server's isError result: the model reads it
    assert "Mars/Base" in (mars.content or "")
    assert messages["4"].content == "DONE"
    assert "time_get_current_time: {" in result.output
