"""ToolRouter: runs a `ToolInvocation` with the tool of that name."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, final, runtime_checkable

from typing_extensions import override

from .. import _observe
from .._service import Service
from ..errors import InvalidToolArguments, ToolError, ToolNotFound
from ._batch import current_batch, current_clock
from .models import ToolInvocation, ToolOutput, ToolSpec
from .tool import Tool

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ErrorResult", "ToolCatalog", "ToolGroup", "ToolRouter"]

_log = logging.getLogger("towerpy.tools")

_RAW_SHOWN = 200  # characters of unparseable argument text quoted back to the model


@runtime_checkable
class ToolCatalog(Protocol):
    """What a batch or an agent needs to know about a router's tools: `ToolRouter` is one.

    `ParallelToolRouter`, `ParallelToolsLayer` and `Agent` read it from the router they are
    given when that router is a catalog itself, or from their ``catalog=`` argument (a
    `ToolRouter` wrapped in layers is not one: pass the `ToolRouter` as ``catalog=``).
    """

    @property
    def specs(self) -> list[ToolSpec]:
        """The specs of the tools, for the model."""
        ...

    def is_sequential(self, name: str) -> bool:
        """Whether the tool called ``name`` must run alone inside a batch."""
        ...


@final
class ErrorResult:
    """What a tool returns to report a failure to the model without raising.

    `ToolRouter` turns it into a `ToolOutput` with ``is_error=True`` and this ``content``,
    whatever the join policy: the call itself worked, and its answer is an error the model can
    act on (an MCP tool's ``isError`` result is one). A tool that cannot answer at all raises
    instead, and the batch's `JoinPolicy` decides what happens.

    Attributes:
        content: What the model reads, usually a short text.
    """

    __slots__ = ("content",)

    def __init__(self, content: Any) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErrorResult) and other.content == self.content

    __hash__ = None  # type: ignore[assignment]  # equal by content, which may be mutable

    def __repr__(self) -> str:
        return f"ErrorResult({self.content!r})"


@runtime_checkable
class ToolGroup(Protocol):
    """Tools that can change while a router routes to them: an MCP server's tools are one.

    A `ToolRouter` given a group (``ToolRouter(group)``, or a group among its tools) reads the
    group's tools again whenever ``tools_version`` has changed, so tools a server adds, changes
    or removes reach the router's `specs` and routing. Unpacking a group
    (``ToolRouter([*group, other])``) registers the tools it has at that moment instead.
    """

    @property
    def tools_version(self) -> int:
        """A number that changes whenever the group's tools change."""
        ...

    def __iter__(self) -> Iterator[Service[dict[str, Any], Any]]:
        """The group's tools, as they are now."""
        ...


_Entry = Service[dict[str, Any], Any]


@final
class ToolRouter(Service[ToolInvocation, ToolOutput], direct_call=True):
    """Dispatches each invocation to the tool of its name.

    ``ready()`` returns at once: which tool a call needs is known only from its request, so each
    tool's own limit is acquired inside ``call()``. ``call(invocation)`` raises `ToolNotFound`
    (listing the known names) for an unknown name, `InvalidToolArguments` when the model's
    argument text was not a JSON object (``raw_arguments`` is set) or the arguments do not fit
    the tool's schema, and otherwise returns a `ToolOutput` with the invocation's ``id`` and
    ``name`` and the tool's return value as ``content`` (an `ErrorResult` becomes an output with
    ``is_error=True``). A tool's own exception propagates unchanged.

    A tool is a `Tool` (``@tool``, `Tool.from_schema`) or any `Service` from an arguments dict to
    a result that carries a ``spec`` (`ToolSpec`) and, optionally, ``sequential`` (bool). A
    `ToolGroup`, such as `towerpy.mcp.McpTools`, registers all of its tools and keeps them
    current.

    Args:
        tools: The tools to route to, or one `ToolGroup`.

    Raises:
        TypeError: Something other than a tool or a `ToolGroup` was given.
        ValueError: Two tools have the same name.
    """

    __slots__ = ("_entries", "_groups", "_sequential", "_specs", "_tools", "_versions")

    def __init__(self, tools: Iterable[_Entry | ToolGroup] | ToolGroup = ()) -> None:
        self._entries: list[_Entry | ToolGroup] = []
        self._groups: list[ToolGroup] = []
        self._versions: tuple[int, ...] = ()
        self._tools: dict[str, _Entry] = {}
        self._specs: list[ToolSpec] = []
        self._sequential: set[str] = set()
        if _is_group(tools):
            self.register(tools)
            return
        if not isinstance(tools, Iterable):
            raise TypeError(f"ToolRouter needs an iterable of tools, got {tools!r}")
        for item in tools:
            self.register(item)

    def register(self, tool: _Entry | ToolGroup) -> None:
        """Adds a tool, or every tool of a `ToolGroup` (kept current as the group changes).

        Raises:
            TypeError: ``tool`` is neither a tool nor a `ToolGroup`.
            ValueError: A tool of that name is registered already.
        """
        candidate: object = tool
        if _is_group(candidate):
            self._entries.append(candidate)
            self._groups.append(candidate)
        else:
            _check_tool(candidate)
            self._entries.append(tool)
        try:
            self._rebuild(strict=True)
        except BaseException:
            self._entries.pop()
            if self._groups and self._groups[-1] is candidate:
                self._groups.pop()
            self._rebuild(strict=False)
            raise

    def _rebuild(self, *, strict: bool) -> None:
        table: dict[str, _Entry] = {}
        specs: list[ToolSpec] = []
        sequential: set[str] = set()
        self._versions = tuple(group.tools_version for group in self._groups)
        for entry in self._entries:
            members: list[Any] = list(entry) if _is_group(entry) else [entry]
            for member in members:
                if _is_group(entry):
                    _check_tool(member)
                spec: ToolSpec = member.spec
                if spec.name in table:
                    if strict:
                        raise ValueError(_clash(spec.name, entry))
                    # a group that changed later cannot be refused: the tool registered
                    # first keeps the name
                    _log.warning("%s", _clash(spec.name, entry))
                    continue
                table[spec.name] = member
                specs.append(spec)
                if getattr(member, "sequential", False):
                    sequential.add(spec.name)
        self._tools = table
        self._specs = specs
        self._sequential = sequential

    def _current(self) -> dict[str, _Entry]:
        if self._groups and self._versions != tuple(g.tools_version for g in self._groups):
            self._rebuild(strict=False)
        return self._tools

    @property
    def specs(self) -> list[ToolSpec]:
        """The specs of every tool, in registration order: what a `ChatRequest` carries."""
        self._current()
        return list(self._specs)

    @property
    def names(self) -> list[str]:
        """The names of every tool, in registration order."""
        return list(self._current())

    def is_sequential(self, name: str) -> bool:
        """Whether the tool called ``name`` must run alone inside a batch (False if unknown)."""
        self._current()
        return name in self._sequential

    @property
    def has_sequential(self) -> bool:
        """Whether any registered tool is sequential."""
        self._current()
        return bool(self._sequential)

    def get(self, name: str) -> _Entry | None:
        """Returns the tool called ``name``, or None."""
        return self._current().get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._current()

    def __iter__(self) -> Iterator[_Entry]:
        return iter(list(self._current().values()))

    def __len__(self) -> int:
        return len(self._current())

    @override
    async def call(self, request: ToolInvocation) -> ToolOutput:
        if _observe.tool_call is not None and _observe.entering(request):
            traced: ToolOutput = await _observe.tool_call(
                self, request
            )  # runs this again, in a span
            return traced
        tool = (self._current() if self._groups else self._tools).get(request.name)
        if tool is None:
            raise ToolNotFound(self._not_found(request.name))
        if request.raw_arguments is not None:
            raise InvalidToolArguments(_unusable_arguments(request.name, request.raw_arguments))
        if request.name in self._sequential:
            _check_barrier(request.name)
        clock = current_clock.get()
        # only a Tool says when its function starts: any other service's call is all run time
        if clock is None or clock.inside or clock.waiting or type(tool) is not Tool:
            content = await tool(request.arguments)
        else:
            # a batch times this call: waiting for the tool's own capacity (its permit, in its
            # ready() or call(), and a worker thread) is not running; the tool's function
            # starting resumes the clock
            clock.pause()
            clock.inside = True
            try:
                content = await tool(request.arguments)
            finally:
                clock.inside = False
                clock.run()
        if type(content) is ErrorResult:
            return ToolOutput(
                id=request.id, name=request.name, content=content.content, is_error=True
            )
        return ToolOutput(id=request.id, name=request.name, content=content)

    def _not_found(self, name: str) -> str:
        known = ", ".join(repr(known) for known in self._tools) or "none"
        return f"no tool named {name!r}; known tools: {known}"

    def __repr__(self) -> str:
        return f"ToolRouter({self.names!r})"


def _is_group(value: object) -> TypeGuard[ToolGroup]:
    return not isinstance(value, Service) and isinstance(value, ToolGroup)


def _check_tool(candidate: object) -> None:
    if isinstance(candidate, Tool):
        return
    if isinstance(candidate, Service):
        spec = getattr(candidate, "spec", None)
        if not isinstance(spec, ToolSpec):
            raise TypeError(
                f"ToolRouter needs tools: {candidate!r} is a Service but has no .spec "
                f"(a ToolSpec with its name, description and parameters); give it one, or make "
                f"a tool with @tool or Tool.from_schema"
            )
        if not isinstance(getattr(candidate, "sequential", False), bool):
            raise TypeError(f"{candidate!r}: .sequential must be a bool")
        return
    hint = "; decorate it with @tool, or use Tool.from_schema" if callable(candidate) else ""
    raise TypeError(
        f"ToolRouter needs tools (a Tool, or a Service with a .spec), got {candidate!r}{hint}"
    )


def _clash(name: str, entry: object) -> str:
    return (
        f"a tool named {name!r} is registered already ({entry!r} brings another); give one of "
        f"them another name: @tool(name=...), or prefix=... for an MCP server's tools"
    )


def _check_barrier(name: str) -> None:
    batch = current_batch.get()
    if batch is not None and batch.size > 1 and batch.sequential is None:
        # never run a tool that must run alone next to others: say how to fix the batch
        raise ToolError(
            f"tool {name!r} must run alone, but the ParallelToolRouter running this batch cannot "
            f"tell which tools are sequential (its router is not a ToolRouter); pass "
            f"catalog=<the ToolRouter> to ParallelToolRouter, ParallelToolsLayer or Agent"
        )


def _unusable_arguments(name: str, raw: str) -> str:
    shown = raw if len(raw) <= _RAW_SHOWN else raw[:_RAW_SHOWN] + "…"
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and not _encodable(parsed):
        return (
            f"arguments for tool {name!r} are not valid Unicode (they hold a lone surrogate "
            f"such as \\ud83d): {shown!r}; send them again as valid text"
        )
    if isinstance(parsed, dict):
        # an object that was still kept back: the provider cut the call off before it ended
        return (
            f"arguments for tool {name!r} were cut off before they were complete: {shown!r}; "
            f"call the tool again with all of its parameters"
        )
    return (
        f"arguments for tool {name!r} are not a JSON object: {shown!r}; send one JSON object "
        f"with the tool's parameters"
    )


def _encodable(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True
