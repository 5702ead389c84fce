"""ParallelToolsLayer: a step service that also runs the tools its model asked for.

It lives with the tools, and knows the step service's request and outcome only by the two small
protocols below (`towerpy.llm.ChatRequest` and `towerpy.llm.StepOutcome` implement them), so
importing `towerpy.tools` never loads the llm package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final

from typing_extensions import override

from .._priority import check_priority
from .._service import Middleware, Service
from .parallel import JoinPolicy, ParallelToolRouter, catalog_of, check_options

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Self

    from .models import ToolInvocation, ToolOutput, ToolSpec
    from .router import ToolCatalog

__all__ = ["ParallelTools", "ParallelToolsLayer", "StepRequest", "StepResult"]


class StepRequest(Protocol):
    """What `ParallelTools` needs of a step request (`towerpy.llm.ChatRequest` is one)."""

    @property
    def tools(self) -> list[ToolSpec]:
        """The specs of the tools the model may call."""
        ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Returns a copy with the fields in ``update`` replaced."""
        ...


class StepResult(Protocol):
    """What `ParallelTools` needs of a step outcome (`towerpy.llm.StepOutcome` is one)."""

    @property
    def tool_calls(self) -> list[ToolInvocation]:
        """The tools the model asked for."""
        ...

    def with_tool_results(self, outputs: Sequence[ToolOutput]) -> Self:
        """Returns the outcome with one tool message per output appended, and not done."""
        ...


StepRequestT = TypeVar("StepRequestT", bound=StepRequest)
StepResultT = TypeVar("StepResultT", bound=StepResult)


@final
class ParallelTools(Middleware[StepRequestT, StepResultT], direct_call=True):
    """Runs the tool calls of each model answer in parallel and appends their results.

    ``ready()`` is the inner step service's. ``call(request)`` calls the step service; when the
    outcome asks for tools, it runs them through a `ParallelToolRouter` (bounded, in call
    order, under its join policy), appends one ``role="tool"`` message per call with its
    ``tool_call_id``, and returns the outcome with those messages and ``done=False``. A request
    that carries no tool specs gets those of the router's catalog, so the model knows what it
    may call. Errors: the step service's, and under `JoinPolicy.JOIN_ALL` /
    `JoinPolicy.FAIL_FAST` a tool's.

    Args:
        inner: The step service (one model call).
        tools: The parallel router that runs each batch.
    """

    __slots__ = ("tools",)

    def __init__(
        self, inner: Service[StepRequestT, StepResultT], tools: ParallelToolRouter
    ) -> None:
        super().__init__(inner)
        self.tools = tools

    @override
    async def call(self, request: StepRequestT) -> StepResultT:
        if not request.tools:
            catalog = self.tools.catalog
            specs = catalog.specs if catalog is not None else None  # read now: tools may be added
            if specs:
                request = request.model_copy(update={"tools": list(specs)})
        outcome: StepResultT = await self.inner(request)
        if not outcome.tool_calls:
            return outcome
        outputs = await self.tools(outcome.tool_calls)
        return outcome.with_tool_results(outputs)

    def __repr__(self) -> str:
        return f"ParallelTools({self.inner!r}, {self.tools!r})"


@final
class ParallelToolsLayer:
    """Wraps a step service in `ParallelTools`: the tools a model asks for run in parallel.

    Args:
        router: Runs one invocation: a `ToolRouter`, perhaps wrapped in layers.
        limit: The most tool calls of one model answer in flight at once.
        policy: What happens when a tool call fails (default: the model reads the error).
        tool_timeout: Seconds each tool may run once started, or None.
        wait_timeout: Seconds each tool call may wait for capacity before it starts, or None.
        catalog: The tools' specs and sequential flags (default: ``router`` when it is a
            `ToolCatalog`, such as a `ToolRouter`; give the `ToolRouter` when ``router`` wraps
            it in layers).
        priority: Returns a tool call's priority: of an answer asking for more than ``limit``
            tools, the highest start first (see `ParallelToolRouter`); None for call order.

    Raises:
        TypeError: ``router`` is not a service, ``policy`` not a `JoinPolicy`, ``catalog``
            not a `ToolCatalog`, or ``priority`` not a plain function.
        ValueError: ``limit`` below 1 or a timeout not positive.
    """

    __slots__ = (
        "catalog",
        "limit",
        "policy",
        "priority",
        "router",
        "tool_timeout",
        "wait_timeout",
    )

    def __init__(
        self,
        router: Service[ToolInvocation, ToolOutput],
        limit: int = 5,
        policy: JoinPolicy = JoinPolicy.ISOLATE,
        tool_timeout: float | None = None,
        *,
        wait_timeout: float | None = None,
        catalog: ToolCatalog | None = None,
        priority: Callable[[ToolInvocation], int] | None = None,
    ) -> None:
        check_options(router, limit, policy, tool_timeout, wait_timeout)
        check_priority(priority)
        self.priority = priority
        self.router = router
        self.limit = limit
        self.policy = policy
        self.tool_timeout = tool_timeout
        self.wait_timeout = wait_timeout
        self.catalog = catalog_of(router, catalog)

    def layer(
        self, inner: Service[StepRequestT, StepResultT]
    ) -> ParallelTools[StepRequestT, StepResultT]:
        """Wraps the step service ``inner``."""
        parallel = ParallelToolRouter(
            self.router,
            self.limit,
            self.policy,
            self.tool_timeout,
            wait_timeout=self.wait_timeout,
            catalog=self.catalog,
            priority=self.priority,
        )
        return ParallelTools(inner, parallel)

    @property
    def specs(self) -> list[ToolSpec]:
        """The specs of the catalog's tools (empty without a catalog)."""
        return list(self.catalog.specs) if self.catalog is not None else []

    def __repr__(self) -> str:
        return (
            f"ParallelToolsLayer({self.router!r}, limit={self.limit}, "
            f"policy={self.policy.name}, tool_timeout={self.tool_timeout})"
        )
