"""Tools: what a model may call, how calls are routed, and how batches of them run."""

from ._threads import ThreadLimiter
from .models import ToolInvocation, ToolOutput, ToolSpec
from .parallel import JoinPolicy, ParallelToolRouter, describe_failure
from .router import ToolRouter
from .tool import Tool, tool

# isort: split
# last: this layer lives with the step services, whose messages import this package first
from ..llm.parallel_tools import ParallelToolsLayer

__all__ = [
    "JoinPolicy",
    "ParallelToolRouter",
    "ParallelToolsLayer",
    "ThreadLimiter",
    "Tool",
    "ToolInvocation",
    "ToolOutput",
    "ToolRouter",
    "ToolSpec",
    "describe_failure",
    "tool",
]
