"""Conversion between towerpy's conversation types and OpenAI's Chat Completions wire format."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from ._errors import error_from_body
from ._sdk import parse_arguments
from .messages import Message, StepOutcome, ToolCall, Usage

if TYPE_CHECKING:
    from .._ratelimits import RateLimitInfo
    from ..tools.models import ToolSpec
    from .messages import ChatRequest

__all__ = [
    "build_outcome",
    "new_call_id",
    "read_usage",
    "to_outcome",
    "to_wire_messages",
    "to_wire_tools",
]

# OpenAI has no error flag on tool messages: the text carries it
ERROR_PREFIX = "Error: "


def _tool_call(call: ToolCall) -> dict[str, Any]:
    # raw text goes back verbatim: the model sees exactly what it sent
    if call.raw_arguments is not None:
        arguments = call.raw_arguments
    else:
        # pydantic-core's encoder is about 3x faster than json.dumps for these small objects
        arguments = to_json(call.arguments).decode()
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def to_wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Converts a conversation to Chat Completions ``messages``.

    Raises:
        ValueError: A tool message has no ``tool_call_id``.
    """
    wire: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.role
        if role == "assistant":
            if message.tool_calls:
                wire.append(
                    {
                        "role": "assistant",
                        "content": message.content or None,
                        "tool_calls": [_tool_call(call) for call in message.tool_calls],
                    }
                )
            else:
                wire.append({"role": "assistant", "content": message.content or ""})
        elif role == "tool":
            if not message.tool_call_id:
                raise ValueError(
                    f"messages[{index}] is a tool message without tool_call_id; set it to the "
                    f"id of the tool call it answers (Message.tool(output) does)"
                )
            content = message.content or ""
            if message.is_error:
                content = ERROR_PREFIX + content
            # never "name": some compatible servers (Groq) reject it on tool messages
            wire.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": content})
        else:
            wire.append({"role": role, "content": message.content or ""})
    return wire


def to_wire_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """Converts tool specs to Chat Completions ``tools`` (function tools, not strict)."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
            },
        }
        for spec in tools
    ]


def read_usage(raw: Any) -> Usage | None:
    """Reads Chat Completions ``usage`` (None when the server sent none)."""
    if raw is None:
        return None
    details = getattr(raw, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        input_tokens=getattr(raw, "prompt_tokens", None) or 0,
        output_tokens=getattr(raw, "completion_tokens", None) or 0,
        cache_read_tokens=cached,
    )


def to_outcome(
    request: ChatRequest, completion: Any, *, rate_limits: RateLimitInfo | None = None
) -> StepOutcome:
    """Reads a ``ChatCompletion`` into a `StepOutcome`.

    Raises:
        ProviderError: The 200 answer carries an error, or no choice, instead of a message.
    """
    choices = getattr(completion, "choices", None)
    if not choices:
        extra = getattr(completion, "model_extra", None) or {}
        raise error_from_body(
            "openai",
            extra.get("error"),
            request_id=getattr(completion, "_request_id", None),
            what="an error instead of an answer"
            if "error" in extra
            else "no choices in the answer",
        )
    choice = choices[0]
    wire_message = choice.message
    calls: list[ToolCall] = []
    for wire_call in wire_message.tool_calls or ():
        function = getattr(wire_call, "function", None)
        if function is None:
            raise error_from_body(
                "openai",
                None,
                request_id=getattr(completion, "_request_id", None),
                what=f"a tool call of unsupported type {getattr(wire_call, 'type', None)!r}",
            )
        arguments, raw = parse_arguments(function.arguments)
        calls.append(
            ToolCall(
                # some compatible servers send no id; the result must still find its call
                id=wire_call.id or new_call_id(),
                name=function.name,
                arguments=arguments,
                raw_arguments=raw,
            )
        )
    return build_outcome(
        request,
        wire_message.content,
        getattr(wire_message, "refusal", None),
        calls,
        read_usage(getattr(completion, "usage", None)),
        choice.finish_reason,
        rate_limits,
    )


def new_call_id() -> str:
    """An id for a tool call a compatible server sent without one."""
    return f"call_{secrets.token_hex(12)}"


def build_outcome(
    request: ChatRequest,
    content: str | None,
    refusal: str | None,
    calls: list[ToolCall],
    usage: Usage | None,
    finish_reason: str | None,
    rate_limits: RateLimitInfo | None = None,
) -> StepOutcome:
    """The `StepOutcome` of an answer, read whole (`to_outcome`) or streamed."""
    if refusal:
        finish_reason = "refusal"
        content = content or refusal
    message = Message(role="assistant", content=content, tool_calls=calls)
    # built from validated parts: skip re-validating the whole conversation on every step
    return StepOutcome.model_construct(
        messages=[*request.messages, message],
        tool_calls=[call.to_invocation() for call in calls],
        done=not calls,
        usage=usage,
        finish_reason=finish_reason,
        rate_limits=rate_limits,
    )
