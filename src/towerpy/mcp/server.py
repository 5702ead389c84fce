"""serve_mcp: a `ToolRouter`'s tools, with their limits, served to MCP clients."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel

from .. import _backend
from ..errors import ToolNotFound
from ..tools.models import ToolInvocation
from ..tools.parallel import catalog_of, describe_failure
from ._convert import import_mcp

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp.types import CallToolRequestParams, CallToolResult, ListToolsResult
    from mcp.types import PaginatedRequestParams as _Paginated
    from starlette.applications import Starlette

    from .._service import Service
    from ..tools.models import ToolOutput
    from ..tools.router import ToolCatalog

__all__ = ["mcp_app", "mcp_server", "serve_mcp"]

_GRACE = 5.0  # seconds open HTTP connections get to finish when the server stops


def mcp_server(
    router: Service[ToolInvocation, ToolOutput],
    *,
    name: str = "towerpy",
    version: str = "",
    catalog: ToolCatalog | None = None,
) -> Server[Any]:
    """Builds an MCP server (the SDK's low-level ``Server``) over a router's tools.

    ``tools/list`` answers with the catalog's specs as they are at that moment, and
    ``tools/call`` runs ``router`` on a `ToolInvocation` (its id is the request's id), so each
    tool's own concurrency limit and timeout, and any layer around the router, hold across
    every client. A tool's return value is the result's text (JSON for anything but a str)
    and, for a dict or a pydantic model, also its ``structuredContent``; an output with
    ``is_error``, and a tool's exception, are ``isError`` results the client's model reads
    (for an exception, the text `describe_failure` gives); an unknown tool is the protocol
    error -32602, as the MCP specification says.

    Args:
        router: A `ToolRouter`, perhaps wrapped in layers.
        name: The server's name in ``serverInfo``.
        version: The server's version in ``serverInfo``.
        catalog: The specs to list, when ``router`` is wrapped in layers (the `ToolRouter`).

    Returns:
        The server; run it with `serve_mcp`, or with the SDK.

    Raises:
        ImportError: The ``mcp`` extra is not installed.
        TypeError: No catalog: ``router`` is not a `ToolRouter` and ``catalog`` is not given.
    """
    import_mcp("serve_mcp")
    import mcp.types as types
    from mcp import MCPError
    from mcp.server.lowlevel import Server

    found = catalog_of(router, catalog)
    if found is None:
        raise TypeError(
            f"serve_mcp needs the tools' specs: {router!r} is not a ToolRouter; pass the "
            f"ToolRouter inside it as catalog=..."
        )
    specs_of: ToolCatalog = found

    async def list_tools(
        ctx: ServerRequestContext[Any], params: _Paginated | None
    ) -> ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=spec.name, description=spec.description, input_schema=spec.parameters
                )
                for spec in specs_of.specs
            ]
        )

    async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> Any:
        invocation = ToolInvocation(
            id=str(ctx.request_id), name=params.name, arguments=dict(params.arguments or {})
        )
        try:
            output = await router(invocation)
        except ToolNotFound as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from exc
        except Exception as exc:
            return _result(types, describe_failure(invocation, exc), is_error=True)
        return _result(types, output.content, is_error=output.is_error)

    return Server(name, version=version, on_list_tools=list_tools, on_call_tool=call_tool)


def _result(types: Any, content: Any, *, is_error: bool) -> CallToolResult:
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="json")
    text = (
        content
        if isinstance(content, str)
        else json.dumps(content, ensure_ascii=False, default=str)
    )
    structured = content if isinstance(content, dict) and not is_error else None
    result: CallToolResult = types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=structured,
        is_error=is_error,
    )
    return result


def mcp_app(
    router: Service[ToolInvocation, ToolOutput],
    *,
    name: str = "towerpy",
    version: str = "",
    catalog: ToolCatalog | None = None,
    path: str = "/mcp",
    host: str = "127.0.0.1",
) -> Starlette:
    """The ASGI application that serves a router's tools over streamable HTTP.

    For an ASGI server of your choice (one that runs on trio, such as hypercorn, or an
    application you mount it in). Its lifespan runs the SDK's session manager, so the ASGI
    server must run lifespan events.

    Args:
        router: As for `mcp_server`.
        name: As for `mcp_server`.
        version: As for `mcp_server`.
        catalog: As for `mcp_server`.
        path: Where the MCP endpoint is.
        host: The host the server listens on: for a loopback host, the SDK turns on its
            DNS-rebinding protection (only loopback ``Host`` and ``Origin`` headers pass).

    Returns:
        The Starlette application.
    """
    server = mcp_server(router, name=name, version=version, catalog=catalog)
    return server.streamable_http_app(streamable_http_path=path, host=host)


async def serve_mcp(
    router: Service[ToolInvocation, ToolOutput],
    *,
    transport: Literal["stdio", "http"] = "stdio",
    name: str = "towerpy",
    version: str = "",
    catalog: ToolCatalog | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/mcp",
    task_status: TaskStatus[str | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves a router's tools to MCP clients, until cancelled (or, on stdio, until stdin ends).

    Example:
        >>> anyio.run(serve_mcp, ToolRouter([search, fetch]))  # a stdio server

    With ``transport="stdio"`` this process is the server a client started (its stdin and
    stdout carry the protocol; the SDK points stray prints at stderr). With ``"http"`` it
    listens on ``host:port`` (``port=0``: a free port) through uvicorn, which runs on asyncio
    only; on trio, serve `mcp_app` with an ASGI server that runs there. Started with
    ``await task_group.start(serve_mcp, router, ...)``, it reports the endpoint's URL (None
    for stdio) once it accepts connections.

    Args:
        router: A `ToolRouter`, perhaps wrapped in layers (see `mcp_server`).
        transport: ``"stdio"`` or ``"http"`` (streamable HTTP).
        name: The server's name in ``serverInfo``.
        version: The server's version in ``serverInfo``.
        catalog: The specs to list, when ``router`` is wrapped in layers.
        host: The address to listen on (HTTP).
        port: The port to listen on (HTTP); 0 picks a free one.
        path: The MCP endpoint's path (HTTP).
        task_status: Set by ``task_group.start``: receives the URL.

    Raises:
        ImportError: The ``mcp`` extra is not installed.
        ValueError: An unknown ``transport``.
        RuntimeError: HTTP on trio (uvicorn needs asyncio).
    """
    if transport not in ("stdio", "http"):
        raise ValueError(f"transport must be 'stdio' or 'http', got {transport!r}")
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        server = mcp_server(router, name=name, version=version, catalog=catalog)
        async with stdio_server() as (read, write):
            task_status.started(None)
            await server.run(read, write, server.create_initialization_options())
        return
    if _backend.current().NAME == "trio":
        raise RuntimeError(
            "serve_mcp(transport='http') runs uvicorn, which needs asyncio; on trio, serve "
            "mcp_app(router) with an ASGI server that runs on trio (hypercorn)"
        )
    app = mcp_app(router, name=name, version=version, catalog=catalog, path=path, host=host)
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        bound = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=int(_GRACE),
        )
        web = uvicorn.Server(config)
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        async with anyio.create_task_group() as group:

            async def run() -> None:
                # shielded: a cancelled serve_mcp asks uvicorn to stop instead, so it closes
                # its connections and runs the app's shutdown
                with anyio.CancelScope(shield=True):
                    await web.serve(sockets=[sock])
                group.cancel_scope.cancel()  # uvicorn stopped by itself (a signal): so do we

            group.start_soon(run)
            try:
                task_status.started(f"http://{shown}:{bound}{path}")
                await anyio.sleep_forever()
            finally:
                web.should_exit = True
    finally:
        sock.close()
