"""Conversion between towerpy's conversation types and Anthropic's Messages wire format."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from ._errors import error_from_body
from ._sdk import parse_arguments
from .messages import Message, StepOutcome, ToolCall, Usage

if TYPE_CHECKING:
    from .._ratelimits import RateLimitInfo
    from ..tools.models import ToolSpec
    from .messages import ChatRequest

__all__ = [
    "TRUNCATED",
    "build_outcome",
    "read_usage",
    "to_outcome",
    "to_wire",
    "to_wire_tools",
    "wire_tool_id",
]

_VALID_ID = re.compile(r"[a-zA-Z0-9_-]+")
_INVALID_CHAR = re.compile(r"[^a-zA-Z0-9_-]")
# stop reasons after which the last tool_use block may hold arguments cut short
TRUNCATED = frozenset({"max_tokens", "model_context_window_exceeded"})


@functools.lru_cache(maxsize=4096)  # every step re-sends the whole conversation's ids
def wire_tool_id(tool_id: str) -> str:
    """Makes a tool call id acceptable to Anthropic (``^[a-zA-Z0-9_-]+$``).

    Ids from other providers (Kimi's ``functions.get:0``) are rewritten the same way on the
    ``tool_use`` block and on its ``tool_result``, so they still pair up. A valid id is kept; an
    invalid one gets its invalid characters replaced and a short hash of the original appended,
    so two ids that differ only in those characters stay distinct.
    """
    if _VALID_ID.fullmatch(tool_id):
        return tool_id
    digest = hashlib.sha256(tool_id.encode()).hexdigest()[:10]
    return f"{_INVALID_CHAR.sub('_', tool_id)}_{digest}"


def _input(call: ToolCall) -> dict[str, Any]:
    if call.raw_arguments is None:
        return call.arguments
    # input must be an object: keep the model's text when it is one (a call cut short), else {}
    try:
        parsed = json.loads(call.raw_arguments)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    try:  # a lone surrogate (text that was not valid Unicode) cannot go out as UTF-8
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return {}
    return parsed


def _blocks(index: int, message: Message) -> tuple[str, list[dict[str, Any]]]:
    text = message.content
    if message.role == "tool":
        if not message.tool_call_id:
            raise ValueError(
                f"messages[{index}] is a tool message without tool_call_id; set it to the "
                f"id of the tool call it answers (Message.tool(output) does)"
            )
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": wire_tool_id(message.tool_call_id),
        }
        if text:  # an empty content is left out rather than sent empty
            block["content"] = text
        if message.is_error:
            block["is_error"] = True
        return "user", [block]
    # the API rejects empty and whitespace-only text blocks; they carry nothing
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": text}] if text and not text.isspace() else []
    )
    if message.role == "assistant":
        blocks.extend(
            {
                "type": "tool_use",
                "id": wire_tool_id(call.id),
                "name": call.name,
                "input": _input(call),
            }
            for call in message.tool_calls
        )
        return "assistant", blocks
    return "user", blocks


def to_wire(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """Converts a conversation to Anthropic's top-level ``system`` and its ``messages``.

    System messages are joined with a blank line into ``system``. Consecutive turns of one role
    are merged into one message, so every tool result of a batch lands in ONE user message, its
    ``tool_result`` blocks before any text.

    Raises:
        ValueError: A tool message has no ``tool_call_id``.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    misordered: list[list[dict[str, Any]]] = []
    for index, message in enumerate(messages):
        if message.role == "system":
            if message.content:
                system.append(message.content)
            continue
        role, blocks = _blocks(index, message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            content = turns[-1]["content"]
            if message.role == "tool" and content[-1]["type"] != "tool_result":
                misordered.append(content)  # a tool result after user text
            content.extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for content in misordered:
        # the API wants a tool batch's results first in the message that answers it
        content.sort(key=lambda block: block["type"] != "tool_result")
    return ("\n\n".join(system) if system else None), turns


def to_wire_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """Converts tool specs to Anthropic's ``tools``."""
    return [
        {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
        for spec in tools
    ]


def read_usage(raw: Any) -> Usage | None:
    """Reads Anthropic ``usage`` (None when the server sent none)."""
    if raw is None:
        return None
    written = getattr(raw, "cache_creation_input_tokens", None)
    read = getattr(raw, "cache_read_input_tokens", None)
    # Anthropic's input_tokens counts only the tokens after the last cache breakpoint
    return Usage(
        input_tokens=(getattr(raw, "input_tokens", None) or 0) + (written or 0) + (read or 0),
        output_tokens=getattr(raw, "output_tokens", None) or 0,
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


def to_outcome(
    request: ChatRequest, message: Any, *, rate_limits: RateLimitInfo | None = None
) -> StepOutcome:
    """Reads an Anthropic ``Message`` into a `StepOutcome`.

    Text blocks are joined; ``tool_use`` blocks become tool calls. After a ``max_tokens`` stop,
    a trailing ``tool_use`` may hold arguments cut short: it is kept with ``arguments={}`` and
    its input as ``raw_arguments``, so the router refuses to run it and the model is told.

    Raises:
        ProviderError: The 200 answer carries an error instead of a message.
    """
    content = getattr(message, "content", None)
    if getattr(message, "type", "message") != "message" or content is None:
        extra = getattr(message, "model_extra", None) or {}
        raise error_from_body(
            "anthropic",
            extra.get("error"),
            request_id=getattr(message, "_request_id", None),
            what="an error instead of an answer" if "error" in extra else "no message content",
        )
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        kind = block.type
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use":
            arguments, raw = parse_arguments(block.input)
            calls.append(
                ToolCall(id=block.id, name=block.name, arguments=arguments, raw_arguments=raw)
            )
    stop_reason: str | None = getattr(message, "stop_reason", None)
    if (
        calls
        and stop_reason in TRUNCATED
        and content[-1].type == "tool_use"
        and calls[-1].raw_arguments is None
    ):
        last = calls[-1]
        raw_text = json.dumps(content[-1].input, ensure_ascii=False, default=str)
        calls[-1] = ToolCall(id=last.id, name=last.name, arguments={}, raw_arguments=raw_text)
    return build_outcome(
        request,
        "".join(texts) or None,
        calls,
        read_usage(getattr(message, "usage", None)),
        stop_reason,
        rate_limits,
    )


def build_outcome(
    request: ChatRequest,
    text: str | None,
    calls: list[ToolCall],
    usage: Usage | None,
    stop_reason: str | None,
    rate_limits: RateLimitInfo | None = None,
) -> StepOutcome:
    """The `StepOutcome` of an answer, read whole (`to_outcome`) or streamed."""
    reply = Message(role="assistant", content=text, tool_calls=calls)
    # built from validated parts: skip re-validating the whole conversation on every step
    return StepOutcome.model_construct(
        messages=[*request.messages, reply],
        tool_calls=[call.to_invocation() for call in calls],
        done=not calls,
        usage=usage,
        finish_reason=stop_reason,
        rate_limits=rate_limits,
    )
