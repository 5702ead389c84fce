"""What an agent run returns, and the helpers the plain and the streamed run share."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .messages import Message, StepOutcome, Usage

__all__ = ["AgentResult", "add_usage", "answered", "final_text"]


class AgentResult(BaseModel):
    """What `Agent.run` returns.

    Attributes:
        output: The text of the model's final answer.
        messages: The whole conversation, the system message first when one is set.
        steps: How many model calls were made.
        usage: Token counts summed over every model call that reported them, or None.
    """

    output: str
    messages: list[Message] = Field(default_factory=list)
    steps: int
    usage: Usage | None = None


def answered(outcome: StepOutcome) -> bool:
    """Whether the outcome's messages already end with a result for every tool call."""
    answered: set[str | None] = set()
    for message in reversed(outcome.messages):
        if message.role != "tool":
            break
        answered.add(message.tool_call_id)
    return all(call.id in answered for call in outcome.tool_calls)


def final_text(messages: list[Message]) -> str:
    """The text of the last assistant message, or the empty string."""
    for message in reversed(messages):
        if message.role == "assistant":
            return message.content or ""
    return ""


def add_usage(total: Usage | None, usage: Usage | None) -> Usage | None:
    """The token counts of two model calls summed (None when neither reported any)."""
    if usage is None:
        return total
    if total is None:
        return usage
    return Usage(
        input_tokens=total.input_tokens + usage.input_tokens,
        output_tokens=total.output_tokens + usage.output_tokens,
        cache_read_tokens=_sum(total.cache_read_tokens, usage.cache_read_tokens),
        cache_write_tokens=_sum(total.cache_write_tokens, usage.cache_write_tokens),
    )


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)
