"""Between MCP and towerpy: tool names, results, and loading the SDK."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType

__all__ = ["check_prefix", "error_text", "import_mcp", "result_content", "towerpy_names"]

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_LONGEST = 64  # what OpenAI and Anthropic accept as a tool name
_DIGEST = 8


def import_mcp(who: str) -> ModuleType:
    """Imports the ``mcp`` SDK, or says which extra installs it.

    Raises:
        ImportError: The SDK is not installed; the message names the ``pip install`` to run.
    """
    try:
        return importlib.import_module("mcp")
    except ImportError as exc:
        raise ImportError(
            f"{who} needs the 'mcp' package (the official MCP SDK), which is not installed; "
            f"run: pip install 'towerpy[mcp]'"
        ) from exc


def check_prefix(prefix: object) -> str | None:
    """Returns ``prefix`` if it can start a tool name.

    Raises:
        ValueError: Not 1 to 32 letters, digits, ``_`` or ``-``.
    """
    if prefix is None:
        return None
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(
            f"prefix must be 1 to 32 letters, digits, '_' or '-' (it starts every tool name, "
            f"as prefix_name), got {prefix!r}"
        )
    return prefix


def towerpy_names(names: Iterable[str], prefix: str | None) -> dict[str, str]:
    """Maps each MCP tool name to a name model providers accept.

    MCP allows names that providers refuse (dots, slashes, spaces, more than 64 characters).
    The towerpy name is ``prefix_name`` (or ``name``) with every other character replaced by
    ``_``; a name still too long, or equal to one taken already, is cut and given the first
    8 hex digits of the SHA-256 of the MCP name, so it stays the same across refreshes.

    Returns:
        The towerpy name of each MCP name, in the order given.
    """
    mapped: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = _NOT_ALLOWED.sub("_", name) or "tool"
        full = f"{prefix}_{base}" if prefix else base
        if len(full) > _LONGEST or full in taken:
            digest = hashlib.sha256(name.encode()).hexdigest()[:_DIGEST]
            full = f"{full[: _LONGEST - _DIGEST - 1]}_{digest}"
        mapped[name] = full
        taken.add(full)
    return mapped


def _blocks(result: Any) -> list[dict[str, Any]]:
    return [
        block.model_dump(by_alias=True, mode="json", exclude_none=True) for block in result.content
    ]


def result_content(result: Any) -> Any:
    """What a successful ``CallToolResult`` gives a model, as a tool's return value.

    Its ``structuredContent`` when there is one (a tool with an output schema), else the text
    of its one text block, else its content blocks as JSON objects (images, resources, several
    blocks).
    """
    structured = result.structured_content
    if structured is not None:
        return structured
    blocks = _blocks(result)
    if len(blocks) == 1 and blocks[0].get("type") == "text":
        return blocks[0].get("text", "")
    return blocks


def error_text(result: Any) -> str:
    """The text of an ``isError`` result: its text blocks, or its blocks as JSON."""
    blocks = _blocks(result)
    texts = [str(block.get("text", "")) for block in blocks if block.get("type") == "text"]
    if texts:
        return "\n".join(texts)
    return json.dumps(blocks, ensure_ascii=False) if blocks else "the tool reported an error"
