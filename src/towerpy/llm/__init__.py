"""LLM step services and the agent loop."""

from ..errors import MaxStepsExceeded, ScriptExhausted
from ._errors import is_retryable
from .agent import Agent, AgentResult
from .anthropic import AnthropicModel
from .messages import ChatRequest, Message, Role, StepOutcome, ToolCall, Usage
from .openai import OpenAIChatModel
from .parallel_tools import ParallelTools, ParallelToolsLayer
from .pool import AgentPool, AgentService, AgentStatistics
from .scripted import ScriptedModel, ScriptEntry

__all__ = [
    "Agent",
    "AgentPool",
    "AgentResult",
    "AgentService",
    "AgentStatistics",
    "AnthropicModel",
    "ChatRequest",
    "MaxStepsExceeded",
    "Message",
    "OpenAIChatModel",
    "ParallelTools",
    "ParallelToolsLayer",
    "Role",
    "ScriptEntry",
    "ScriptExhausted",
    "ScriptedModel",
    "StepOutcome",
    "ToolCall",
    "Usage",
    "is_retryable",
]
