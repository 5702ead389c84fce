"""LLM step services and the agent loop."""

from ..errors import MaxStepsExceeded, ScriptExhausted
from .agent import Agent, AgentResult
from .messages import ChatRequest, Message, Role, StepOutcome, ToolCall, Usage
from .parallel_tools import ParallelTools, ParallelToolsLayer
from .scripted import ScriptedModel, ScriptEntry

__all__ = [
    "Agent",
    "AgentResult",
    "ChatRequest",
    "MaxStepsExceeded",
    "Message",
    "ParallelTools",
    "ParallelToolsLayer",
    "Role",
    "ScriptEntry",
    "ScriptExhausted",
    "ScriptedModel",
    "StepOutcome",
    "ToolCall",
    "Usage",
]
