"""ToolGraph: a batch of tool invocations that depend on one another, checked before it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ._graph import OUTPUT_REFERENCE, Graph
from ._join import JoinPolicy
from .parallel import ParallelToolRouter

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._service import Service
    from .models import ToolInvocation, ToolOutput
    from .router import ToolCatalog

__all__ = ["OUTPUT_REFERENCE", "ToolGraph"]


@final
class ToolGraph(Graph):
    """A batch of tool invocations with their dependencies: checked, then run as early as possible.

    Each invocation lists in ``depends_on`` the ids of invocations of the same batch that must
    finish first. Run through `ParallelToolRouter` (which builds a `ToolGraph` whenever an
    invocation of its batch has ``depends_on``), every invocation starts the moment the last of
    its dependencies has finished, if fewer than ``limit`` are running — not in waves, one
    topological level after another: a slow call holds up only what depends on it.

    An invocation may take an earlier one's output as an argument: an argument value
    ``{"$output": "<id>"}``, at any depth of ``arguments`` (in a list, in a nested object), is
    replaced by the ``content`` of that invocation's output just before this one starts. The id
    must be in its ``depends_on``. (The convention is read only in a batch where some invocation
    has ``depends_on``; a batch without dependencies passes arguments through untouched.)

    When an invocation fails, those that depend on it, however indirectly, never run: under
    `JoinPolicy.ISOLATE` each gets an error output saying it did not run because the failed
    invocation (named by id and tool) failed, a `DependencyFailed`; under `JoinPolicy.JOIN_ALL`
    that error is its outcome (``error.tool_outcomes``) while the batch raises the earliest real
    failure in request order; under `JoinPolicy.FAIL_FAST` the batch stops at the first failure.

    A sequential tool (``@tool(sequential=True)``) stays a barrier: given ``sequential``, the
    graph makes it depend on every invocation before it, and every invocation after it on it.

    Args:
        invocations: The batch, in the order its outputs come back.
        sequential: Tells which tool names are barriers, or None for none.

    Raises:
        TypeError: An item is not a `ToolInvocation`.
        ValueError: Two invocations share an id; an invocation depends on an id the batch does
            not have; the dependencies form a cycle (the message shows it); or an argument uses
            the output of an invocation its ``depends_on`` does not list. Nothing has run then.
    """

    __slots__ = ()

    async def run(
        self,
        router: Service[ToolInvocation, ToolOutput],
        limit: int = 5,
        policy: JoinPolicy = JoinPolicy.ISOLATE,
        tool_timeout: float | None = None,
        *,
        wait_timeout: float | None = None,
        catalog: ToolCatalog | None = None,
        sequential: Callable[[str], bool] | None = None,
    ) -> list[ToolOutput]:
        """Runs the graph through ``router``: ``ParallelToolRouter(router, ...)(invocations)``.

        The arguments are `ParallelToolRouter`'s. Returns the outputs in batch order.
        """
        parallel = ParallelToolRouter(
            router,
            limit,
            policy,
            tool_timeout,
            wait_timeout=wait_timeout,
            catalog=catalog,
            sequential=sequential,
        )
        return await parallel(list(self.invocations))
