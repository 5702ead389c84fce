"""LLM step services and the agent loop."""

from ._errors import is_retryable
from .anthropic import AnthropicModel
from .messages import ChatRequest, Message, Role, StepOutcome, ToolCall, Usage
from .openai import OpenAIChatModel

__all__ = [
    "AnthropicModel",
    "ChatRequest",
    "Message",
    "OpenAIChatModel",
    "Role",
    "StepOutcome",
    "ToolCall",
    "Usage",
    "is_retryable",
]
