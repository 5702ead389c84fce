"""ParallelToolsLayer, re-exported: it lives in `towerpy.tools.layer` (tools never import llm)."""

from ..tools.layer import ParallelTools, ParallelToolsLayer

__all__ = ["ParallelTools", "ParallelToolsLayer"]
