"""LLM step services and the agent loop."""

from .._ratelimits import RateLimitInfo
from ..errors import MaxStepsExceeded, ScriptExhausted
from ._agent_stream import AgentStream
from ._errors import is_retryable
from .agent import Agent, AgentResult
from .anthropic import AnthropicModel
from .estimate import estimate_tokens
from .events import (
    AgentEvent,
    ModelFinished,
    RunFinished,
    StepEvent,
    StepFinished,
    StepStream,
    TextDelta,
    ToolCallComplete,
    ToolCallStarted,
    ToolFinished,
    ToolStarted,
)
from .messages import ChatRequest, Message, Role, StepOutcome, ToolCall, Usage
from .openai import OpenAIChatModel
from .parallel_tools import ParallelTools, ParallelToolsLayer
from .pool import AgentPool, AgentService, AgentStatistics
from .quota import ProviderQuota, ProviderQuotaLayer, ProviderQuotaStatistics
from .scripted import ScriptedModel, ScriptEntry, Streamed

__all__ = [
    "Agent",
    "AgentEvent",
    "AgentPool",
    "AgentResult",
    "AgentService",
    "AgentStatistics",
    "AgentStream",
    "AnthropicModel",
    "ChatRequest",
    "MaxStepsExceeded",
    "Message",
    "ModelFinished",
    "OpenAIChatModel",
    "ParallelTools",
    "ParallelToolsLayer",
    "ProviderQuota",
    "ProviderQuotaLayer",
    "ProviderQuotaStatistics",
    "RateLimitInfo",
    "Role",
    "RunFinished",
    "ScriptEntry",
    "ScriptExhausted",
    "ScriptedModel",
    "StepEvent",
    "StepFinished",
    "StepOutcome",
    "StepStream",
    "Streamed",
    "TextDelta",
    "ToolCall",
    "ToolCallComplete",
    "ToolCallStarted",
    "ToolFinished",
    "ToolStarted",
    "Usage",
    "estimate_tokens",
    "is_retryable",
]
