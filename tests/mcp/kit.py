"""What the MCP tests share: the test server, and how to start it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from towerpy.mcp import McpTools

SERVER = Path(__file__).resolve().parent / "server.py"
ROOT = Path(__file__).resolve().parents[2]
# every MCP test talks to real processes: bounds on real time, generous for a loaded CI
# machine (a server starts in about 1 s); a test that passes them has hung
CONNECT_BOUND = 20.0
CALL_BOUND = 10.0


def stdio_server(**options: Any) -> McpTools:
    """The test server over stdio, as McpTools."""
    return McpTools.stdio(sys.executable, [str(SERVER)], **options)
