"""Tools: what a model may call, how calls are routed, and how batches of them run."""

from ._threads import ThreadLimiter
from .models import ToolInvocation, ToolOutput, ToolSpec
from .parallel import JoinPolicy, ParallelToolRouter, describe_failure
from .router import ToolRouter
from .tool import Tool, tool

# last: it lives with the step services, which import this package's models first
from ..llm.parallel_tools import ParallelToolsLayer  # noqa: E402, I001

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
