"""ParallelToolsLayer: a step service that also runs the tools its model asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from typing_extensions import override

from .._service import Middleware, Service
from ..tools.parallel import JoinPolicy, ParallelToolRouter, check_options, find_attribute

if TYPE_CHECKING:
    from ..tools.models import ToolInvocation, ToolOutput, ToolSpec
    from .messages import ChatRequest, StepOutcome

__all__ = ["ParallelTools", "ParallelToolsLayer"]


@final
class ParallelTools(Middleware["ChatRequest", "StepOutcome"], direct_call=True):
    """Runs the tool calls of each model answer in parallel and appends their results.

    ``ready()`` is the inner step service's. ``call(request)`` calls the step service; when the
    outcome asks for tools, it runs them through a `ParallelToolRouter` (bounded, in call
    order, under its join policy), appends one ``role="tool"`` message per call with its
    ``tool_call_id``, and returns the outcome with those messages and ``done=False``. A request
    that carries no tool specs gets the router's, so the model knows what it may call. Errors:
    the step service's, and under `JoinPolicy.JOIN_ALL` / `JoinPolicy.FAIL_FAST` a tool's.

    Args:
        inner: The step service (one model call).
        tools: The parallel router that runs each batch.
    """

    __slots__ = ("tools",)

    def __init__(self, inner: Service[Any, Any], tools: ParallelToolRouter) -> None:
        super().__init__(inner)
        self.tools = tools

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        if not request.tools:
            specs = find_attribute(self.tools.router, "specs")  # read now: tools may be added
            if specs:
                request = request.model_copy(update={"tools": list(specs)})
        outcome: StepOutcome = await self.inner(request)
        if not outcome.tool_calls:
            return outcome
        outputs = await self.tools(outcome.tool_calls)
        return with_tool_results(outcome, outputs)

    def __repr__(self) -> str:
        return f"ParallelTools({self.inner!r}, {self.tools!r})"


def with_tool_results(outcome: StepOutcome, outputs: list[ToolOutput]) -> StepOutcome:
    """Returns ``outcome`` with one tool message per output appended, and ``done=False``."""
    from .messages import Message  # here: towerpy.tools imports this module while llm loads

    messages = [*outcome.messages, *(Message.tool(output) for output in outputs)]
    return outcome.model_copy(update={"messages": messages, "done": False})


@final
class ParallelToolsLayer:
    """Wraps a step service in `ParallelTools`: the tools a model asks for run in parallel.

    Args:
        router: Runs one invocation: a `ToolRouter`, perhaps wrapped in layers.
        limit: The most tool calls of one model answer in flight at once.
        policy: What happens when a tool call fails (default: the model reads the error).
        tool_timeout: Seconds each tool call may run, or None.

    Raises:
        TypeError: ``router`` is not a service or ``policy`` not a `JoinPolicy`.
        ValueError: ``limit`` below 1 or ``tool_timeout`` not positive.
    """

    __slots__ = ("limit", "policy", "router", "tool_timeout")

    def __init__(
        self,
        router: Service[ToolInvocation, ToolOutput],
        limit: int = 5,
        policy: JoinPolicy = JoinPolicy.ISOLATE,
        tool_timeout: float | None = None,
    ) -> None:
        check_options(router, limit, policy, tool_timeout)
        self.router = router
        self.limit = limit
        self.policy = policy
        self.tool_timeout = tool_timeout

    def layer(self, inner: Service[ChatRequest, StepOutcome]) -> ParallelTools:
        """Wraps the step service ``inner``."""
        return ParallelTools(
            inner, ParallelToolRouter(self.router, self.limit, self.policy, self.tool_timeout)
        )

    @property
    def specs(self) -> list[ToolSpec]:
        """The specs of the router's tools (empty when the router does not tell)."""
        specs = find_attribute(self.router, "specs")
        return list(specs) if specs else []

    def __repr__(self) -> str:
        return (
            f"ParallelToolsLayer({self.router!r}, limit={self.limit}, "
            f"policy={self.policy.name}, tool_timeout={self.tool_timeout})"
        )
