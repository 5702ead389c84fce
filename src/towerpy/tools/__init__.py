"""Tools: what a model may call, how calls are routed, and how batches of them run."""

from ._incremental import OpenBatch
from ._threads import ThreadLimiter
from .bash import Bash, BashResult, bash_tool
from .graph import ToolGraph
from .layer import ParallelTools, ParallelToolsLayer
from .models import ToolInvocation, ToolOutput, ToolSpec
from .parallel import JoinPolicy, ParallelToolRouter, describe_failure
from .plan import PlanStep, plan_tool
from .router import ErrorResult, ToolCatalog, ToolGroup, ToolRouter
from .tool import Tool, tool

__all__ = [
    "Bash",
    "BashResult",
    "ErrorResult",
    "JoinPolicy",
    "OpenBatch",
    "ParallelToolRouter",
    "ParallelTools",
    "ParallelToolsLayer",
    "PlanStep",
    "ThreadLimiter",
    "Tool",
    "ToolCatalog",
    "ToolGraph",
    "ToolGroup",
    "ToolInvocation",
    "ToolOutput",
    "ToolRouter",
    "ToolSpec",
    "bash_tool",
    "describe_failure",
    "plan_tool",
    "tool",
]
