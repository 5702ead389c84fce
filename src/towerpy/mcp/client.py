"""McpTools: the tools of an MCP server, as towerpy tools a `ToolRouter` routes to."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Literal, TextIO, final

import anyio

from ..errors import ToolError
from ..tools.router import ErrorResult
from ..tools.tool import Tool
from ._convert import check_prefix, error_text, import_mcp, result_content, towerpy_names
from ._options import Limit, limits, same, timeouts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from types import TracebackType
    from typing import Self

    from anyio.abc import TaskStatus
    from mcp import Client
    from mcp.client.session import IncomingMessage
    from mcp.types import Tool as McpTool

    from ..tools.models import ToolSpec

__all__ = ["McpTools"]

_log = logging.getLogger("towerpy.mcp")
_PAGES = 100  # tools/list pages read at most: a server whose cursor never ends cannot hang us
_CONNECTION_CLOSED = -32000

Mode = Literal["auto", "legacy"]


@final
class McpTools:
    """The tools of one MCP server, as towerpy tools: connect with ``async with``.

    Make one with `McpTools.stdio` (a server run as a subprocess) or `McpTools.http` (a
    streamable HTTP endpoint). Inside ``async with``, it is a `ToolGroup`: iterate it for its
    `Tool` objects, read `specs`, and give it to a router, as ``ToolRouter(tools)`` (kept
    current when the server's list changes) or ``ToolRouter([*tools, my_tool])`` (the tools
    of this moment).

    Each MCP tool becomes a `Tool.from_schema` tool: its arguments are checked against the
    server's ``inputSchema`` before the call goes out, and the limits, timeouts, retries and
    join policies that apply to any towerpy tool apply to it. A call returns the result's
    ``structuredContent`` if it has one, else the text of its one text block, else its content
    blocks as JSON objects. An ``isError`` result becomes an `ErrorResult` (an output with
    ``is_error=True`` the model reads); a protocol error, a server that closed the connection
    or exited, or a call after ``async with`` has ended raises `ToolError` (whose
    ``__cause__`` is the SDK's error).

    When the server says its tool list changed (``notifications/tools/list_changed``, or a
    ``subscriptions/listen`` event on 2026-07-28 servers), the list is read again in the
    background; `refresh` reads it on demand.

    MCP tool names may hold characters providers refuse: see `towerpy_name` for the mapping.
    Options keyed by tool name (``timeout``, ``concurrency_limit``, ``sequential``) use the
    server's own names.

    Attributes:
        label: Who the server is, for messages (its ``serverInfo`` name once connected).
        prefix: The prefix of every tool name, or None.
    """

    __slots__ = (
        "_changed",
        "_client",
        "_connect",
        "_limits",
        "_lock",
        "_mcp_names",
        "_mode",
        "_sequential",
        "_stack",
        "_timeouts",
        "_tools",
        "_updated",
        "_version",
        "label",
        "prefix",
    )

    def __init__(
        self,
        connect: Callable[[AsyncExitStack], Any],
        *,
        label: str,
        prefix: str | None = None,
        concurrency_limit: Limit | Mapping[str, Limit] | None = None,
        timeout: float | Mapping[str, float] | None = None,
        sequential: Iterable[str] = (),
        mode: Mode = "auto",
    ) -> None:
        self._connect = connect
        self.label = label
        self.prefix = check_prefix(prefix)
        self._limits = limits(concurrency_limit)
        self._timeouts = timeouts(timeout)
        if isinstance(sequential, str) or not isinstance(sequential, Iterable):
            raise TypeError(
                f"sequential must be tool names (a list of str), got {type(sequential).__name__}"
            )
        self._sequential = frozenset(sequential)
        if mode not in ("auto", "legacy"):
            raise ValueError(f"mode must be 'auto' or 'legacy', got {mode!r}")
        self._mode: Mode = mode
        self._client: Client | None = None
        self._stack: AsyncExitStack | None = None
        self._tools: dict[str, Tool] | None = None  # towerpy name -> tool; None: never listed
        self._mcp_names: dict[str, str] = {}  # towerpy name -> MCP name
        self._version = 0
        self._lock = anyio.Lock()
        self._changed = anyio.Event()
        self._updated = anyio.Event()

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        prefix: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        errlog: TextIO | None = None,
        concurrency_limit: Limit | Mapping[str, Limit] | None = None,
        timeout: float | Mapping[str, float] | None = None,
        sequential: Iterable[str] = (),
        mode: Mode = "auto",
    ) -> McpTools:
        """Runs an MCP server as a subprocess and talks to it over its stdin and stdout.

        Example:
            >>> async with McpTools.stdio("mcp-server-time", prefix="time") as time_tools:
            ...     agent = Agent(model, tools=ToolRouter(time_tools))

        Args:
            command: The server's executable.
            args: Its command-line arguments.
            env: Environment variables for it, added to the SDK's safe default set (``PATH``,
                ``HOME``… not the whole environment of this process).
            prefix: Starts every tool name, as ``prefix_name``: tells several servers apart.
            cwd: Its working directory.
            errlog: Where its stderr goes (default: this process's stderr).
            concurrency_limit: An int or a `ConcurrencyLimiter`: at most that many calls in
                flight to this server, across its tools; or a mapping from tool name to such
                a limit, each for that tool alone.
            timeout: Seconds after which a call is cancelled with `Elapsed` (the server is
                told to cancel it): one number for every tool, or a mapping by tool name.
            sequential: Names of tools that must run alone inside a batch.
            mode: How to agree on a protocol version, as ``mcp.Client``: ``"auto"`` tries the
                2026-07-28 ``server/discover`` first, ``"legacy"`` uses ``initialize``.

        Returns:
            The server's tools, connected by ``async with``.

        Raises:
            ImportError: The ``mcp`` extra is not installed.
            TypeError, ValueError: An invalid argument (it is named).
        """
        mcp = import_mcp("McpTools.stdio")
        if not isinstance(command, str) or not command:
            raise ValueError(f"command must be a non-empty str, got {command!r}")
        if isinstance(args, str):
            raise TypeError("args must be a list of str, not one str: write args=[...]")
        params = mcp.StdioServerParameters(
            command=command,
            args=[str(arg) for arg in args],
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )

        def connect(stack: AsyncExitStack) -> Any:
            from mcp.client.stdio import stdio_client

            if errlog is None:
                return stdio_client(params)
            return stdio_client(params, errlog=errlog)

        return cls(
            connect,
            label=os.path.basename(command),
            prefix=prefix,
            concurrency_limit=concurrency_limit,
            timeout=timeout,
            sequential=sequential,
            mode=mode,
        )

    @classmethod
    def http(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        prefix: str | None = None,
        concurrency_limit: Limit | Mapping[str, Limit] | None = None,
        timeout: float | Mapping[str, float] | None = None,
        sequential: Iterable[str] = (),
        mode: Mode = "auto",
    ) -> McpTools:
        """Talks to an MCP server over streamable HTTP.

        Args:
            url: The server's MCP endpoint (``http://127.0.0.1:8000/mcp``).
            headers: Sent with every request (an ``Authorization`` header, for example).
            prefix: Starts every tool name, as ``prefix_name``.
            concurrency_limit: As for `stdio`.
            timeout: As for `stdio`.
            sequential: As for `stdio`.
            mode: As for `stdio`.

        Returns:
            The server's tools, connected by ``async with``.

        Raises:
            ImportError: The ``mcp`` extra is not installed.
            TypeError, ValueError: An invalid argument (it is named).
        """
        import_mcp("McpTools.http")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
        sent = dict(headers or {})

        def connect(stack: AsyncExitStack) -> Any:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            # the SDK's own defaults: 30 s to connect or write, 5 min to read an event stream
            http = httpx2.AsyncClient(headers=sent, timeout=httpx2.Timeout(30.0, read=300.0))
            stack.push_async_callback(http.aclose)
            return streamable_http_client(url, http_client=http)

        return cls(
            connect,
            label=url,
            prefix=prefix,
            concurrency_limit=concurrency_limit,
            timeout=timeout,
            sequential=sequential,
            mode=mode,
        )

    # the connection

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError(f"McpTools for {self.label!r} is connected already")
        from mcp import Client
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        stack = AsyncExitStack()
        try:
            transport = self._connect(stack)
            client = Client(transport, mode=self._mode, message_handler=self._on_message)
            await stack.enter_async_context(client)
            info = client.server_info
            if info is not None and info.name:
                self.label = info.name
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)  # runs first: stops the background work
            self._client = client
            self._changed = anyio.Event()
            await self.refresh()
            self._check_options()
            group.start_soon(self._refresher)
            tools = client.server_capabilities.tools
            if (
                client.protocol_version in MODERN_PROTOCOL_VERSIONS
                and tools is not None
                and tools.list_changed
            ):
                await group.start(self._listen, client)
        except BaseException:
            self._client = None
            # closed without the error: the SDK's task groups would wrap it in a group
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            # the block's own exception is not the connection's: it propagates as it is,
            # never wrapped in an exception group by the SDK's task groups
            await stack.aclose()

    async def _on_message(self, message: IncomingMessage) -> None:
        from mcp.types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification):
            self._changed.set()
        elif isinstance(message, Exception):
            _log.warning("MCP server %r: %s", self.label, message)

    async def _refresher(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            try:
                await self.refresh()
            except Exception as exc:  # the server went away: the calls will say so
                _log.warning("MCP server %r: cannot read its tool list again: %s", self.label, exc)

    async def _listen(
        self, client: Client, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # 2026-07-28 servers send list changes only on a subscriptions/listen stream; its
        # events also reach _on_message, which marks the list as changed
        started = False
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                task_status.started()
                started = True
                async for _event in subscription:
                    pass
        except Exception as exc:
            _log.warning("MCP server %r: its change notifications stopped: %s", self.label, exc)
        if not started:  # a listen that failed at once does not hold up connecting
            task_status.started()

    async def refresh(self) -> None:
        """Reads the server's tool list again, now.

        Tools whose name, description and schema did not change keep their `Tool` object (and
        their calls in flight); `tools_version` changes when anything did.

        Raises:
            ToolError: Not connected, or the server did not answer.
        """
        client = self._connected()
        async with self._lock:
            try:
                listed = await self._list(client)
            except Exception as exc:
                raise ToolError(
                    f"MCP server {self.label!r}: listing its tools failed: {exc}"
                ) from exc
            names = towerpy_names([item.name for item in listed], self.prefix)
            old = self._tools or {}
            tools: dict[str, Tool] = {}
            mcp_names: dict[str, str] = {}
            for item in listed:
                name = names[item.name]
                tool = old.get(name)
                if tool is None or not same(tool, item, self._mcp_names.get(name)):
                    tool = self._make(name, item)
                tools[name] = tool
                mcp_names[name] = item.name
            changed = self._tools is None or list(tools.items()) != list(old.items())
            self._tools, self._mcp_names = tools, mcp_names
            if changed:
                self._version += 1
                self._updated.set()
                self._updated = anyio.Event()

    async def wait_changed(self, since: int) -> int:
        """Waits until `tools_version` differs from ``since`` (at once if it does already).

        Example:
            >>> version = tools.tools_version
            >>> await tools.wait_changed(version)  # the server's list changed, and was read

        Returns:
            The new `tools_version`.
        """
        while self._version == since:
            await self._updated.wait()
        return self._version

    async def _list(self, client: Client) -> list[McpTool]:
        listed: list[McpTool] = []
        cursor: str | None = None
        for _ in range(_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            listed.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return listed

    def _make(self, name: str, item: McpTool) -> Tool:
        mcp_name = item.name
        description = item.description or item.title or f"The {mcp_name!r} tool of {self.label}"
        options: dict[str, Any] = {
            "concurrency_limit": self._limits.get(mcp_name, self._limits.get(None)),
            "timeout": self._timeouts.get(mcp_name, self._timeouts.get(None)),
            "sequential": mcp_name in self._sequential,
        }

        async def call(arguments: dict[str, Any]) -> Any:
            return await self._call(name, mcp_name, arguments)

        call.__name__ = name
        schema = dict(item.input_schema)
        try:
            return Tool.from_schema(name, description, schema, call, **options)
        except ValueError as exc:
            # a schema towerpy cannot check is still one the server checks: send it as it is
            _log.info("MCP tool %r: arguments are checked by the server only: %s", mcp_name, exc)
            return Tool.from_schema(name, description, schema, call, validate=False, **options)

    async def _call(self, name: str, mcp_name: str, arguments: dict[str, Any]) -> Any:
        from mcp import MCPError

        client = self._client
        if client is None:
            raise ToolError(
                f"tool {name!r}: the MCP server {self.label!r} is not connected (its "
                f"`async with McpTools...` block has ended)"
            )
        try:
            result = await client.call_tool(mcp_name, arguments)
        except MCPError as exc:
            if exc.error.code == _CONNECTION_CLOSED:
                raise ToolError(
                    f"tool {name!r}: the MCP server {self.label!r} closed the connection (it "
                    f"exited or crashed): {exc.error.message}"
                ) from exc
            raise ToolError(
                f"tool {name!r}: the MCP server {self.label!r} answered with error "
                f"{exc.error.code}: {exc.error.message}"
            ) from exc
        except Exception as exc:
            raise ToolError(
                f"tool {name!r}: calling the MCP server {self.label!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if result.is_error:
            return ErrorResult(error_text(result))
        return result_content(result)

    def _connected(self) -> Client:
        if self._client is None:
            raise ToolError(
                f"McpTools for {self.label!r} is not connected: use it inside "
                f"`async with McpTools.stdio(...) as tools:` (or .http)"
            )
        return self._client

    def _check_options(self) -> None:
        known = set(self._mcp_names.values())
        named = {key for key in (*self._limits, *self._timeouts) if key is not None}
        unknown = sorted((named | self._sequential) - known)
        if unknown:
            raise ValueError(
                f"MCP server {self.label!r} has no tool named {', '.join(map(repr, unknown))}; "
                f"its tools are {', '.join(map(repr, sorted(known))) or 'none'} (options name "
                f"tools by the server's names, without the prefix)"
            )

    # the group

    @property
    def tools_version(self) -> int:
        """A number that changes whenever the server's tools change (see `ToolGroup`)."""
        return self._version

    def _listed(self) -> dict[str, Tool]:
        if self._tools is None:
            raise RuntimeError(
                f"McpTools for {self.label!r} has no tools yet: connect first, with "
                f"`async with McpTools.stdio(...) as tools:` (or .http), and use tools inside"
            )
        return self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._listed().values()))

    def __len__(self) -> int:
        return len(self._listed())

    def __getitem__(self, name: str) -> Tool:
        """The tool of that (towerpy) name."""
        tools = self._listed()
        if name not in tools:
            raise KeyError(f"{self.label!r} has no tool {name!r}; it has {sorted(tools)}")
        return tools[name]

    @property
    def specs(self) -> list[ToolSpec]:
        """The specs of the server's tools, as models see them."""
        return [tool.spec for tool in self._listed().values()]

    @property
    def names(self) -> list[str]:
        """The towerpy names of the server's tools."""
        return list(self._listed())

    def towerpy_name(self, mcp_name: str) -> str:
        """The name models call the server's tool ``mcp_name`` by.

        It is ``prefix_name`` (or the name alone) with every character other than letters,
        digits, ``_`` and ``-`` replaced by ``_``; a name longer than 64 characters, or one
        another tool of the server took already, is cut and ends in ``_`` and the first 8
        hex digits of the SHA-256 of the MCP name.

        Raises:
            KeyError: The server has no such tool.
        """
        for name, original in self._mcp_names.items():
            if original == mcp_name:
                return name
        raise KeyError(f"{self.label!r} has no MCP tool {mcp_name!r}")

    def __repr__(self) -> str:
        state = "connected" if self._client is not None else "not connected"
        return f"McpTools({self.label!r}, {state})"
