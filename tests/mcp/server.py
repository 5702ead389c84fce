"""An MCP server for the tests, written with the mcp SDK's server API (run as a subprocess).

``python server.py`` serves over stdio; ``python server.py --http`` serves streamable HTTP on
a free loopback port and prints ``PORT <n>`` on stdout once it listens.

Its tools sleep, fail, hang, die, return structured content, count how many calls of them run
at once, and add a tool while running (announcing the change in both protocol eras).
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
from collections import Counter
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST
from pydantic import BaseModel

server = MCPServer("towerpy-test-server")
running: Counter[str] = Counter()
peaks: Counter[str] = Counter()
overlap: dict[int, int] = {}  # each running work call: the most calls seen running with it
calls = itertools.count()


class Forecast(BaseModel):
    city: str
    celsius: float
    sunny: bool


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleeps for a while, then says so."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
async def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
def forecast(city: str, days: int = 1) -> Forecast:
    """Returns a structured forecast."""
    return Forecast(city=city, celsius=20.5 + days, sunny=True)


async def _work(kind: str, seconds: float) -> int:
    running[kind] += 1
    peaks[kind] = max(peaks[kind], running[kind])
    call = next(calls)
    overlap[call] = 0
    for other in overlap:
        overlap[other] = max(overlap[other], len(overlap))
    try:
        await anyio.sleep(seconds)
    finally:
        running[kind] -= 1
    return overlap.pop(call)


@server.tool()
async def work(seconds: float) -> int:
    """Works for a while; returns the most work calls (of both kinds) seen running with it."""
    return await _work("work", seconds)


@server.tool()
async def work_unlimited(seconds: float) -> int:
    """As work, counted apart."""
    return await _work("work_unlimited", seconds)


@server.tool()
def peak(kind: str) -> int:
    """The most calls of a kind (work, work_unlimited) seen running at once."""
    return peaks[kind]


@server.tool()
async def hang() -> str:
    """Never answers (until cancelled)."""
    await anyio.sleep_forever()
    return "unreachable"


@server.tool()
async def die(after: float = 0.0) -> str:
    """Ends the server process abruptly, after a while."""
    await anyio.sleep(after)
    os._exit(3)


@server.tool(name="dotted.name/tool")
def dotted() -> str:
    """A tool whose MCP name providers refuse."""
    return "dotted"


async def _announce(ctx: Context) -> None:
    await ctx.notify_tools_changed()  # 2026-07-28: to subscriptions/listen streams
    if ctx.request_context.session is not None:
        try:  # 2025-11-25: a notification on the session
            await ctx.request_context.session.send_tool_list_changed()
        except Exception as exc:  # a modern connection may have no such channel
            print(f"no session notification: {exc}", file=sys.stderr)


@server.tool()
async def refuse() -> str:
    """Answers with a JSON-RPC error instead of a result (a protocol error)."""
    raise MCPError(code=INVALID_REQUEST, message="refused on purpose")


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool 'extra' and tells the client the list changed."""

    def extra(x: int) -> int:
        """Doubles x."""
        return 2 * x

    server.add_tool(extra, name="extra")
    await _announce(ctx)
    return "grown"


def main(argv: list[str]) -> None:
    if "--http" not in argv:
        server.run()
        return
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    app: Any = server.streamable_http_app()
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    anyio.run(lambda: web.serve(sockets=[sock]))


if __name__ == "__main__":
    main(sys.argv[1:])
