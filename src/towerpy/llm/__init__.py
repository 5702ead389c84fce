"""LLM step services and the agent loop."""

from .messages import ChatRequest, Message, Role, StepOutcome, ToolCall, Usage

__all__ = ["ChatRequest", "Message", "Role", "StepOutcome", "ToolCall", "Usage"]
