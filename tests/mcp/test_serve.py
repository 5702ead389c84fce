"""serve_mcp, tested with the mcp SDK's own client: over stdio (a subprocess) and HTTP (loopback).

Real processes and sockets, so real time (``real_clock``), bounded by kit.py's bounds.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters

from towerpy import ConcurrencyLimitLayer
from towerpy.mcp import McpTools, mcp_server, serve_mcp
from towerpy.tools import ToolInvocation, ToolRouter

from .kit import CALL_BOUND, CONNECT_BOUND, ROOT, SERVER
from .served import router as served_router

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

SERVED = Path(__file__).resolve().parent / "served.py"


def served_over_stdio(backend: str) -> Client:
    # the subprocess imports towerpy from this checkout, and runs on the test's backend
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    params = StdioServerParameters(command=sys.executable, args=[str(SERVED), backend], env=env)
    return Client(params)


def text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def test_serves_a_router_and_its_limits_over_stdio_to_the_sdks_client(
    anyio_backend_name: str,
) -> None:
    with anyio.fail_after(CONNECT_BOUND + 2 * CALL_BOUND):
        async with served_over_stdio(anyio_backend_name) as client:
            listed = (await client.list_tools()).tools
            assert [tool.name for tool in listed] == [spec.name for spec in served_router.specs]
            by_name = {tool.name: tool for tool in listed}
            assert by_name["point"].input_schema == served_router.get("point").spec.parameters  # type: ignore[union-attr]
            assert by_name["echo"].description == "Returns its arguments."

            point = await client.call_tool("point", {"x": 3})
            assert not point.is_error
            assert point.structured_content == {"x": 3, "y": 0}
            assert text(point) == '{"x": 3, "y": 0}'
            assert text(await client.call_tool("echo", {"value": "hi"})) == "hi"

            exploded = await client.call_tool("explode", {})
            assert exploded.is_error
            assert text(exploded) == "tool 'explode' failed: RuntimeError: boom"
            refused = await client.call_tool("refusal", {})
            assert refused.is_error
            assert text(refused) == "not today"
            invalid = await client.call_tool("point", {"y": 1})
            assert invalid.is_error
            assert "x: field required" in text(invalid)
            with pytest.raises(MCPError, match="no tool named 'nope'"):
                await client.call_tool("nope", {})

            # the tools' limits hold for concurrent MCP calls: crunch has concurrency_limit=2
            peaks: list[int] = []

            async def crunch() -> None:
                peaks.append(int(text(await client.call_tool("crunch", {"seconds": 0.3}))))

            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(crunch)
            assert len(peaks) == 5
            assert max(peaks) == 2  # the most crunch calls the server saw running at once


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_serves_over_http_on_loopback_to_the_sdk_and_to_mcp_tools() -> None:
    # uvicorn runs on asyncio only; McpTools.http on trio is tested against a subprocess below
    router = ToolRouter(served_router)  # the same tools, under one more limit for every caller
    limited = ConcurrencyLimitLayer(1).layer(router)
    with anyio.fail_after(CONNECT_BOUND + 2 * CALL_BOUND):
        async with anyio.create_task_group() as group:
            url = await group.start(
                partial(serve_mcp, limited, transport="http", port=0, catalog=router)
            )
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/mcp")
            async with Client(url) as client:
                names = [tool.name for tool in (await client.list_tools()).tools]
                assert names == router.names
                point = await client.call_tool("point", {"x": 1, "y": 2})
                assert point.structured_content == {"x": 1, "y": 2}
            async with McpTools.http(url, prefix="served") as tools:
                output = await ToolRouter(tools)(
                    ToolInvocation(id="1", name="served_echo", arguments={"value": "round trip"})
                )
                assert output.content == "round trip"
                failed = await tools["served_explode"]({})
                assert failed.content == "tool 'explode' failed: RuntimeError: boom"
            group.cancel_scope.cancel()


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_mcp_tools_over_http_on_trio_against_a_server_in_a_subprocess() -> None:
    # on asyncio, McpTools.http is tested against serve_mcp above
    with anyio.fail_after(CONNECT_BOUND + CALL_BOUND):
        async with await anyio.open_process([sys.executable, str(SERVER), "--http"]) as process:
            try:
                assert process.stdout is not None
                line = b""
                while not line.endswith(b"\n"):
                    line += await process.stdout.receive(1)
                port = int(line.split()[1])
                url = f"http://127.0.0.1:{port}/mcp"
                async with McpTools.http(url, headers={"X-Test": "1"}, timeout=5.0) as tools:
                    assert "forecast" in tools.names
                    output = await ToolRouter(tools)(
                        ToolInvocation(id="1", name="forecast", arguments={"city": "Lima"})
                    )
                    assert output.content["city"] == "Lima"
            finally:
                process.terminate()


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_serving_http_on_trio_says_to_use_mcp_app() -> None:
    with pytest.raises(RuntimeError, match="mcp_app"):
        await serve_mcp(served_router, transport="http")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match=r"catalog=\.\.\."):
        mcp_server(ConcurrencyLimitLayer(1).layer(served_router))
    with pytest.raises(ValueError, match="transport must be"):
        anyio.run(partial(serve_mcp, served_router, transport="sse"))  # type: ignore[arg-type]
