"""plan_tool: a tool through which a model sends a whole plan of dependent tool calls at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ._join import JoinPolicy
from .graph import ToolGraph
from .models import ToolInvocation
from .parallel import ParallelToolRouter
from .tool import Tool, tool

if TYPE_CHECKING:
    from .._service import Service
    from .models import ToolOutput
    from .router import ToolCatalog

__all__ = ["PlanStep", "plan_tool"]

_DESCRIPTION = (
    "Runs several tool calls as one plan, in parallel where they do not depend on each other. "
    "Each step has an id of your choice, the tool to call, its arguments, and depends_on: the "
    'ids of earlier steps it must wait for. An argument value {"$output": "<step id>"} is '
    "replaced by that step's output (list the step in depends_on). A step whose dependency "
    "failed does not run. Returns every step's output, in the order of the steps."
)


class PlanStep(BaseModel):
    """One step of a plan a model sends to `plan_tool`."""

    id: str = Field(description="The step's id, unique in the plan.")
    tool: str = Field(description="The name of the tool to call.")
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description='The tool\'s arguments; {"$output": "<step id>"} stands for that output.',
    )
    depends_on: list[str] = Field(
        default_factory=list, description="The ids of the steps that must finish first."
    )


def plan_tool(
    router: Service[ToolInvocation, ToolOutput],
    *,
    name: str = "run_plan",
    description: str = _DESCRIPTION,
    limit: int = 5,
    tool_timeout: float | None = None,
    catalog: ToolCatalog | None = None,
) -> Tool:
    """Makes a tool that runs a plan of dependent tool calls through ``router``.

    Providers' tool calls carry no dependencies (their ids are made by the provider, after
    the answer is written), so a model that wants step B to use step A's result needs two
    answers, or this: one call of the plan tool, whose argument is the whole plan. The plan
    runs as a `ToolGraph` through a `ParallelToolRouter` (``limit``, ``tool_timeout``,
    `JoinPolicy.ISOLATE`): every step starts as soon as the steps it depends on are done, and
    a failed step, or one that did not run because its dependency failed, is reported in its
    place. A plan with a cycle or an unknown id fails as a whole, with a message the model can
    act on (`ValueError`, an error output under the agent's `ISOLATE`).

    Register it next to the tools it calls: ``router.register(plan_tool(router))``.

    Args:
        router: Runs each step (the `ToolRouter` with the tools a plan may use).
        name: The tool's name.
        description: What the model is told (the default explains the convention).
        limit: The most steps of one plan in flight at once.
        tool_timeout: Seconds each step may run once started, or None.
        catalog: Which tools are sequential (see `ParallelToolRouter`).

    Returns:
        A `Tool` taking ``steps: list[PlanStep]`` and returning, per step, ``{"id", "tool",
        "output", "is_error"}``.
    """
    parallel = ParallelToolRouter(router, limit, JoinPolicy.ISOLATE, tool_timeout, catalog=catalog)

    async def run_plan(steps: list[PlanStep]) -> list[dict[str, Any]]:
        invocations = [
            ToolInvocation(
                id=step.id,
                name=step.tool,
                arguments=step.arguments,
                depends_on=tuple(step.depends_on),
            )
            for step in steps
        ]
        ToolGraph(invocations)  # checks the references even of a plan without depends_on
        outputs = await parallel(invocations)
        return [
            {"id": o.id, "tool": o.name, "output": o.content, "is_error": o.is_error}
            for o in outputs
        ]

    return tool(run_plan, name=name, description=description)
