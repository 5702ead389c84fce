"""towerpy tools served with serve_mcp over stdio: the server the serve_mcp tests start.

``python served.py [asyncio|trio]`` runs it on that backend.
"""

from __future__ import annotations

import sys

import anyio
from pydantic import BaseModel

from towerpy.mcp import serve_mcp
from towerpy.tools import ErrorResult, Tool, ToolRouter, tool

running = 0
peak = 0


class Point(BaseModel):
    x: int
    y: int


@tool(concurrency_limit=2)
async def crunch(seconds: float) -> int:
    """Works for a while; returns the most crunch calls seen running at once so far."""
    global running, peak
    running += 1
    peak = max(peak, running)
    try:
        await anyio.sleep(seconds)
        return peak
    finally:
        running -= 1


@tool
def point(x: int, y: int = 0) -> Point:
    """Makes a point."""
    return Point(x=x, y=y)


@tool
def explode() -> str:
    """Always raises."""
    raise RuntimeError("boom")


@tool
def refusal() -> ErrorResult:
    """Answers with an error for the model."""
    return ErrorResult("not today")


echo = Tool.from_schema(
    "echo",
    "Returns its arguments.",
    {"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]},
    lambda arguments: arguments["value"],
)

router = ToolRouter([crunch, point, explode, refusal, echo])

if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    anyio.run(lambda: serve_mcp(router, name="served"), backend=backend)
