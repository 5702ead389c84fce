"""McpTools' options: limits and timeouts by tool name, and when a listed tool is unchanged."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..limit.concurrency import ConcurrencyLimiter
from ..limit.protocols import ConcurrencyBackend

if TYPE_CHECKING:
    from ..tools.tool import Tool

__all__ = ["Limit", "limits", "same", "timeouts"]

Limit = int | ConcurrencyBackend


def same(tool: Tool, item: Any, mcp_name: str | None) -> bool:
    """Whether a listed MCP tool is what ``tool`` was made from."""
    return (
        mcp_name == item.name
        and tool.description == (item.description or item.title or tool.description)
        and tool.spec.parameters == {"type": "object", "properties": {}, **item.input_schema}
    )


def limits(value: object) -> dict[str | None, Limit]:
    """Reads ``concurrency_limit``: None keys the limit for every tool of the server."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        limits: dict[str | None, Limit] = {}
        for name, limit in value.items():
            if not isinstance(name, str):
                raise TypeError(f"concurrency_limit keys must be tool names, got {name!r}")
            limits[name] = _limit(limit, f"concurrency_limit[{name!r}]")
        return limits
    return {None: _limit(value, "concurrency_limit")}


def _limit(value: object, what: str) -> Limit:
    if isinstance(value, ConcurrencyBackend):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an int >= 1 or a ConcurrencyLimiter, got {value!r}")
    # one limiter for the name, whatever tool object serves it: a refresh keeps the count
    return ConcurrencyLimiter(value)


def timeouts(value: object) -> dict[str | None, float]:
    """Reads ``timeout``: None keys the timeout of every tool."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {
            _key(name, "timeout"): _seconds(seconds, f"timeout[{name!r}]")
            for name, seconds in value.items()
        }
    return {None: _seconds(value, "timeout")}


def _key(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} keys must be tool names, got {name!r}")
    return name


def _seconds(value: object, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{what} must be seconds > 0, got {value!r}")
    return float(value)
