"""MCP: an MCP server's tools as towerpy tools, and towerpy tools served over MCP (extra ``mcp``).

Importing this module needs nothing more than towerpy; using it needs the official ``mcp`` SDK
(``pip install 'towerpy[mcp]'``), imported when first needed, with an `ImportError` naming the
extra when it is missing.
"""

from .client import McpTools
from .server import mcp_app, mcp_server, serve_mcp

__all__ = ["McpTools", "mcp_app", "mcp_server", "serve_mcp"]
