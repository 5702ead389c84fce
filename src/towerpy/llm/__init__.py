"""LLM step services and the agent loop."""

from ..errors import MaxStepsExceeded, ScriptExhausted
from ._errors import is_retryable
from ._ratelimits import RateLimitInfo
from .agent import Agent, AgentResult
from .anthropic import AnthropicModel
from .estimate import estimate_tokens
from .messages import ChatRequest, Message, Role, StepOutcome, ToolCall, Usage
from .openai import OpenAIChatModel
from .parallel_tools import ParallelTools, ParallelToolsLayer
from .quota import ProviderQuota, ProviderQuotaLayer, ProviderQuotaStatistics
from .scripted import ScriptedModel, ScriptEntry

__all__ = [
    "Agent",
    "AgentResult",
    "AnthropicModel",
    "ChatRequest",
    "MaxStepsExceeded",
    "Message",
    "OpenAIChatModel",
    "ParallelTools",
    "ParallelToolsLayer",
    "ProviderQuota",
    "ProviderQuotaLayer",
    "ProviderQuotaStatistics",
    "RateLimitInfo",
    "Role",
    "ScriptEntry",
    "ScriptExhausted",
    "ScriptedModel",
    "StepOutcome",
    "ToolCall",
    "Usage",
    "estimate_tokens",
    "is_retryable",
]
