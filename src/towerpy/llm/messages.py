"""The conversation types every step service speaks, whatever the provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from .._ratelimits import RateLimitInfo  # noqa: TC001 - pydantic reads the annotation
from ..tools.models import ToolInvocation, ToolOutput, ToolSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ChatRequest", "Message", "Role", "StepOutcome", "ToolCall", "Usage"]

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A tool call inside an assistant message.

    Attributes:
        id: The provider's id for the call.
        name: The tool's name.
        arguments: The arguments object.
        raw_arguments: The model's argument text when it was not a JSON object (then
            ``arguments`` is ``{}``), kept so the conversation replays verbatim.
    """

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = None

    def to_invocation(self) -> ToolInvocation:
        """Returns the `ToolInvocation` a tool router runs for this call."""
        return ToolInvocation(
            id=self.id, name=self.name, arguments=self.arguments, raw_arguments=self.raw_arguments
        )


class Message(BaseModel):
    """One message of a conversation.

    Attributes:
        role: ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"``.
        content: The text, if any.
        tool_calls: On assistant messages: the tools the model asks to run.
        tool_call_id: On tool messages: the id of the call this message answers.
        name: On tool messages: the tool's name.
        is_error: On tool messages: the tool failed, and ``content`` says how.
    """

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls(role="user", content=content)

    @classmethod
    def assistant(
        cls, content: str | None = None, tool_calls: list[ToolCall] | None = None
    ) -> Message:
        """An assistant message, with text, tool calls, or both."""
        return cls(role="assistant", content=content, tool_calls=list(tool_calls or []))

    @classmethod
    def tool(cls, output: ToolOutput) -> Message:
        """The tool message that reports ``output`` back to the model."""
        content = output.content if isinstance(output.content, str) else _to_text(output.content)
        return cls(
            role="tool",
            content=content,
            tool_call_id=output.id,
            name=output.name,
            is_error=output.is_error,
        )


def _to_text(value: Any) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False, default=_jsonable)
    except (TypeError, ValueError):
        return str(value)


def _jsonable(value: Any) -> Any:
    # a pydantic model (a tool's structured result) reaches the model as its JSON object
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


class ChatRequest(BaseModel):
    """One model call: the conversation so far, and the tools the model may ask for.

    Attributes:
        messages: The conversation, oldest first.
        tools: Specs of the tools the model may call.
        model: The model to use, when the step service serves several.
    """

    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    model: str | None = None


class Usage(BaseModel):
    """Token counts of one model call, for token-per-minute limits.

    Attributes:
        input_tokens: Prompt tokens, cached ones included.
        output_tokens: Generated tokens.
        cache_read_tokens: Of the input, tokens read from the provider's prompt cache, if known.
        cache_write_tokens: Of the input, tokens written to the prompt cache, if known.
    """

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class StepOutcome(BaseModel):
    """What one step (one model call, plus the tools it asked for) produced.

    Attributes:
        messages: The conversation so far, the model's new message (and any tool results) last.
        tool_calls: The tools the model asked for, as router invocations.
        done: True when the model answered without asking for tools.
        usage: Token counts, when the provider reported them.
        finish_reason: The provider's stop reason, for information only.
        rate_limits: The key's quota as the provider's response headers reported it (see
            `RateLimitInfo`), when it sent any; `ProviderQuotaLayer` learns from it.
    """

    messages: list[Message]
    tool_calls: list[ToolInvocation] = Field(default_factory=list)
    done: bool
    usage: Usage | None = None
    finish_reason: str | None = None
    rate_limits: RateLimitInfo | None = None

    def with_tool_results(self, outputs: Sequence[ToolOutput]) -> StepOutcome:
        """Returns this outcome with one tool message per output appended, and ``done=False``."""
        messages = [*self.messages, *(Message.tool(output) for output in outputs)]
        return self.model_copy(update={"messages": messages, "done": False})
