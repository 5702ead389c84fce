"""Tools: what a model may call, how calls are routed, and how batches of them run."""

from .models import ToolInvocation, ToolOutput, ToolSpec

__all__ = ["ToolInvocation", "ToolOutput", "ToolSpec"]
