"""McpTools against a real MCP server (tests/mcp/server.py) run as a subprocess over stdio.

Real processes, so real time (``real_clock``): every test is bounded by ``anyio.fail_after``
with the generous bounds of kit.py; no assertion is on how long something took.
"""

from __future__ import annotations

import sys

import anyio
import pytest

from towerpy import Elapsed, InvalidToolArguments, ToolError
from towerpy.llm import Agent, Message, ScriptedModel, ToolCall
from towerpy.mcp import McpTools, mcp_server
from towerpy.tools import JoinPolicy, ParallelToolRouter, Tool, ToolInvocation, ToolRouter

from .kit import CALL_BOUND, CONNECT_BOUND, SERVER, stdio_server

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


def invocation(name: str, id: str = "1", **arguments: object) -> ToolInvocation:
    return ToolInvocation(id=id, name=name, arguments=arguments)


async def test_lists_the_tools_into_specs_calls_them_and_maps_results_and_errors() -> None:
    with anyio.fail_after(CONNECT_BOUND + CALL_BOUND):
        async with stdio_server() as tools:
            assert {"sleep", "fail", "forecast", "work", "hang", "die"} <= set(tools.names)
            assert all(isinstance(item, Tool) for item in tools)
            forecast = tools["forecast"]
            assert forecast.spec.description == "Returns a structured forecast."
            assert forecast.spec.parameters["required"] == ["city"]
            router = ToolRouter(tools)
            assert router.specs == tools.specs

            output = await router(invocation("forecast", city="Oslo", days=2))
            assert output.content == {"city": "Oslo", "celsius": 22.5, "sunny": True}
            assert not output.is_error
            # an MCPServer tool returning a str still has structured content: {"result": ...}
            assert (await router(invocation("sleep", seconds=0))).content == {"result": "slept 0.0"}

            failed = await router(invocation("fail", reason="disk full"))
            assert failed.is_error
            assert "failed on purpose: disk full" in failed.content

            with pytest.raises(InvalidToolArguments, match="city: field required"):
                await router(invocation("forecast", days=1))  # checked before it goes out
            with pytest.raises(InvalidToolArguments, match=r"seconds: expected number"):
                await router(invocation("sleep", seconds="long"))

            # a JSON-RPC error is a protocol error: ToolError, the SDK's error as its cause
            with pytest.raises(ToolError, match=r"tool 'refuse': .* answered with error") as caught:
                await router(invocation("refuse"))
            assert "refused on purpose" in str(caught.value)
            assert type(caught.value.__cause__).__name__ == "MCPError"
            parallel = ParallelToolRouter(router, policy=JoinPolicy.ISOLATE)
            [output] = await parallel([invocation("refuse")])  # under ISOLATE, the model reads it
            assert output.is_error
            assert "refused on purpose" in output.content

            # a name providers refuse is mapped; the call uses the server's name
            name = tools.towerpy_name("dotted.name/tool")
            assert name == "dotted_name_tool"
            assert (await router(invocation(name))).content == {"result": "dotted"}


async def test_limits_and_barriers_hold_across_mcp_calls() -> None:
    # peak in flight as the server itself counts it: 2 with the limit, all 6 without
    with anyio.fail_after(CONNECT_BOUND + 2 * CALL_BOUND):
        async with stdio_server(concurrency_limit={"work": 2}, sequential=["forecast"]) as tools:
            parallel = ParallelToolRouter(ToolRouter(tools), limit=12)
            limited = [invocation("work", str(i), seconds=0.2) for i in range(6)]
            unlimited = [invocation("work_unlimited", str(i), seconds=0.2) for i in range(6)]
            outputs = await parallel(limited + unlimited)
            assert all(not output.is_error for output in outputs)
            peak = await ToolRouter(tools)(invocation("peak", kind="work"))
            assert peak.content == {"result": 2}
            free = await ToolRouter(tools)(invocation("peak", kind="work_unlimited"))
            assert free.content == {"result": 6}

            # a sequential tool is a barrier: the call before it ran alone, the two after together
            router = ToolRouter(tools)
            assert router.is_sequential("forecast")
            assert not router.is_sequential("work")
            batch = [invocation("work_unlimited", str(i), seconds=0.2) for i in range(3)]
            batch.insert(1, invocation("forecast", "f", city="Oslo"))
            outputs = await ParallelToolRouter(router, limit=10)(batch)
            overlaps = [output.content["result"] for output in outputs if output.name != "forecast"]
            assert overlaps == [1, 2, 2]


async def test_one_limit_for_the_whole_server() -> None:
    with anyio.fail_after(CONNECT_BOUND + 2 * CALL_BOUND):
        async with stdio_server(concurrency_limit=3) as tools:
            parallel = ParallelToolRouter(ToolRouter(tools), limit=10)
            batch = [invocation("work", str(i), seconds=0.2) for i in range(4)]
            batch += [invocation("work_unlimited", f"u{i}", seconds=0.2) for i in range(4)]
            outputs = await parallel(batch)
            # the most calls of the server seen running together, by the server's count
            assert max(output.content["result"] for output in outputs) == 3


async def test_a_hanging_tool_times_out_then_a_server_that_dies_mid_call_is_a_tool_error() -> None:
    script = [
        Message.assistant(
            tool_calls=[
                ToolCall(id="a", name="sleep", arguments={"seconds": 30}),
                ToolCall(id="b", name="die", arguments={"after": 0.3}),
            ]
        ),
        Message.assistant("the server went away; I will answer without it"),
    ]
    with anyio.fail_after(CONNECT_BOUND + 2 * CALL_BOUND):
        async with stdio_server(timeout={"hang": 0.5}) as tools:
            router = ToolRouter(tools)
            with pytest.raises(Elapsed):
                await router(invocation("hang"))
            # the session goes on: the next calls are answered
            assert (await router(invocation("sleep", seconds=0))).content == {"result": "slept 0.0"}
            parallel = ParallelToolRouter(router, policy=JoinPolicy.ISOLATE)
            batch = [invocation("hang", "a"), invocation("forecast", "b", city="X")]
            outputs = await parallel(batch)
            assert outputs[0].is_error
            assert outputs[0].content == "tool 'hang' timed out after 0.5 seconds"
            assert outputs[1].content["city"] == "X"

            # then the server exits while a call is in flight: the agent (ISOLATE) goes on
            agent = Agent(ScriptedModel(script), tools=router)
            result = await agent.run("sleep, then die")
            assert result.output == "the server went away; I will answer without it"
            results = [m for m in result.messages if m.role == "tool"]
            assert [m.tool_call_id for m in results] == ["a", "b"]
            for message in results:
                assert message.is_error
                assert "closed the connection (it exited or crashed)" in (message.content or "")
            with pytest.raises(ToolError, match="closed the connection"):
                await router(invocation("sleep", seconds=0))


async def test_an_error_in_the_block_propagates_as_it_is_and_later_calls_fail_clearly() -> None:
    async def fail_inside() -> ToolRouter:
        async with stdio_server() as tools:
            routers.append(ToolRouter(tools))
            raise KeyError("mine")

    routers: list[ToolRouter] = []
    with anyio.fail_after(CONNECT_BOUND), pytest.raises(KeyError, match="mine"):
        await fail_inside()
    [router] = routers
    with pytest.raises(ToolError, match="not connected"):
        await router(invocation("sleep", seconds=0))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_list_is_read_again_when_the_server_says_it_changed(mode: str) -> None:
    # auto: a 2026-07-28 subscriptions/listen stream; legacy: a notification on the session
    with anyio.fail_after(CONNECT_BOUND + CALL_BOUND):
        async with stdio_server(mode=mode) as tools:
            router = ToolRouter(tools)  # a live group: the router sees the change too
            snapshot = ToolRouter([*tools])
            version = tools.tools_version
            assert "extra" not in router
            await router(invocation("grow"))
            await tools.wait_changed(version)  # the refresh runs in the background
            assert "extra" in tools.names
            assert "extra" in router.names
            assert router.get("sleep") is snapshot.get("sleep")  # unchanged tools are kept
            assert "extra" not in snapshot
            output = await router(invocation("extra", x=21))
            assert output.content == {"result": 42}


async def test_several_servers_in_one_router_with_prefixes() -> None:
    with anyio.fail_after(CONNECT_BOUND + CALL_BOUND):
        async with stdio_server(prefix="a") as first, stdio_server(prefix="b") as second:
            router = ToolRouter([first, second])
            assert {"a_sleep", "b_sleep", "a_forecast"} <= set(router.names)
            output = await router(invocation("b_forecast", city="Rome"))
            assert output.name == "b_forecast"
            assert output.content["city"] == "Rome"
            with pytest.raises(ValueError, match=r"'a_sleep' is registered already.*prefix"):
                ToolRouter([first, *first])
            flat = ToolRouter([*first, *second])
            assert flat.names == router.names


async def test_options_naming_a_tool_the_server_lacks_are_refused_at_connect() -> None:
    with anyio.fail_after(CONNECT_BOUND):
        with pytest.raises(ValueError, match=r"no tool named 'slep'.*'sleep'"):
            async with stdio_server(timeout={"slep": 1.0}):
                pass  # pragma: no cover - the connection is refused


def test_bad_options_are_refused_at_construction() -> None:
    command = sys.executable
    with pytest.raises(ValueError, match="prefix must be"):
        McpTools.stdio(command, [str(SERVER)], prefix="a b")
    with pytest.raises(ValueError, match="concurrency_limit must be an int >= 1"):
        McpTools.stdio(command, concurrency_limit=0)
    with pytest.raises(ValueError, match=r"timeout\['x'\] must be seconds > 0"):
        McpTools.stdio(command, timeout={"x": -1})
    with pytest.raises(TypeError, match="args must be a list of str"):
        McpTools.stdio(command, str(SERVER))
    with pytest.raises(TypeError, match="sequential must be tool names"):
        McpTools.stdio(command, sequential="work")
    with pytest.raises(ValueError, match="mode must be"):
        McpTools.stdio(command, mode="new")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url must be an http"):
        McpTools.http("localhost:8000/mcp")


def test_a_router_given_tools_that_never_connected_says_how_to_connect() -> None:
    tools = McpTools.stdio(sys.executable, [str(SERVER)])
    with pytest.raises(RuntimeError, match="connect first, with `async with McpTools"):
        ToolRouter(tools)


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # import mcp now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'towerpy\[mcp\]'"):
        McpTools.stdio(sys.executable)
    with pytest.raises(ImportError, match=r"McpTools.http needs the 'mcp' package"):
        McpTools.http("http://127.0.0.1:1/mcp")
    with pytest.raises(ImportError, match=r"serve_mcp needs the 'mcp' package"):
        mcp_server(ToolRouter())
