"""ToolRouter: runs a `ToolInvocation` with the tool of that name."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Protocol, final, runtime_checkable

from typing_extensions import override

from .. import _observe
from .._service import Service
from .._validate import check_instance
from ..errors import InvalidToolArguments, ToolError, ToolNotFound
from ._batch import current_batch, current_clock
from .models import ToolInvocation, ToolOutput, ToolSpec
from .tool import Tool

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["ToolCatalog", "ToolRouter"]

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
class ToolRouter(Service[ToolInvocation, ToolOutput], direct_call=True):
    """Dispatches each invocation to the tool of its name.

    ``ready()`` returns at once: which tool a call needs is known only from its request, so each
    tool's own limit is acquired inside ``call()``. ``call(invocation)`` raises `ToolNotFound`
    (listing the known names) for an unknown name, `InvalidToolArguments` when the model's
    argument text was not a JSON object (``raw_arguments`` is set) or the arguments do not fit
    the tool's schema, and otherwise returns a `ToolOutput` with the invocation's ``id`` and
    ``name`` and the tool's return value as ``content``. A tool's own exception propagates
    unchanged.

    Args:
        tools: The tools to route to.

    Raises:
        TypeError: Something other than a `Tool` was given.
        ValueError: Two tools have the same name.
    """

    __slots__ = ("_sequential", "_tools")

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._sequential: set[str] = set()
        for item in tools:
            self.register(item)

    def register(self, tool: Tool) -> None:
        """Adds a tool.

        Raises:
            TypeError: ``tool`` is not a `Tool`.
            ValueError: A tool of that name is registered already.
        """
        candidate: object = tool
        hint = "decorate it with @tool" if callable(candidate) else ""
        check_instance("tool", candidate, Tool, "a Tool", hint=hint)
        if tool.name in self._tools:
            raise ValueError(
                f"a tool named {tool.name!r} is registered already; give one of them another "
                f"name with @tool(name=...)"
            )
        self._tools[tool.name] = tool
        if tool.sequential:
            self._sequential.add(tool.name)

    @property
    def specs(self) -> list[ToolSpec]:
        """The specs of every tool, in registration order: what a `ChatRequest` carries."""
        return [item.spec for item in self._tools.values()]

    @property
    def names(self) -> list[str]:
        """The names of every tool, in registration order."""
        return list(self._tools)

    def is_sequential(self, name: str) -> bool:
        """Whether the tool called ``name`` must run alone inside a batch (False if unknown)."""
        return name in self._sequential

    @property
    def has_sequential(self) -> bool:
        """Whether any registered tool is sequential."""
        return bool(self._sequential)

    def get(self, name: str) -> Tool | None:
        """Returns the tool called ``name``, or None."""
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    @override
    async def call(self, request: ToolInvocation) -> ToolOutput:
        if _observe.tool_call is not None and _observe.entering(request):
            return await _observe.tool_call(self, request)  # traced: runs this again, in a span
        tool = self._tools.get(request.name)
        if tool is None:
            raise ToolNotFound(self._not_found(request.name))
        if request.raw_arguments is not None:
            raise InvalidToolArguments(_unusable_arguments(request.name, request.raw_arguments))
        if tool.sequential:
            _check_barrier(request.name)
        clock = current_clock.get()
        if clock is None or clock.inside or clock.waiting:
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
        return ToolOutput(id=request.id, name=request.name, content=content)

    def _not_found(self, name: str) -> str:
        known = ", ".join(repr(known) for known in self._tools) or "none"
        return f"no tool named {name!r}; known tools: {known}"

    def __repr__(self) -> str:
        return f"ToolRouter({self.names!r})"


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
