"""``python -m towerpy demo``: several agents, parallel tools and shared limits, on a timeline."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import anyio

from ..testing.virtual import VirtualTimeEventLoop
from .scenario import MODEL_RATE, PLANS, TOOL_LIMITS, TOOL_TIMEOUT, build, run_agents
from .timeline import Row, Timeline

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.console import Console

    from .._service import Service
    from ..llm import Agent, AgentResult, ChatRequest, StepOutcome
    from .scenario import AgentPlan

__all__ = ["main", "one_at_a_time", "peak", "summary"]

_VISIBLE_WAIT = 0.01  # seconds


def peak(rows: Iterable[Row]) -> int:
    """The most of ``rows`` running at one instant."""
    events: list[tuple[float, int]] = []
    for row in rows:
        if row.started is not None and row.ended is not None and row.ended > row.started:
            events += [(row.started, 1), (row.ended, -1)]
    running = best = 0
    for _, change in sorted(events):  # at equal times an end (-1) sorts before a start
        running += change
        best = max(best, running)
    return best


def one_at_a_time(
    rows: Iterable[Row], agents: Iterable[str], rate: float, burst: float
) -> tuple[float, float]:
    """How long the same calls take made one at a time, under the same limits.

    Replays the recorded calls one after another: agent by agent, each agent's calls in the
    order it made them, each taking as long as it ran. One call at a time never meets a
    concurrency limit, but the model calls still share the rate limit: each one waits for its
    token as the bucket would make it wait, so a fast model spends that run mostly waiting.

    Args:
        rows: The recorded calls.
        agents: The agents, in the order to replay them.
        rate: Model calls per second of the shared rate limit.
        burst: How many model calls the full bucket admits at once (it starts full).

    Returns:
        The seconds the whole run takes, and how many of them are spent waiting for the rate
        limit.
    """
    rows = list(rows)
    now = waited = 0.0
    tokens, refilled = burst, 0.0  # the bucket's level, and when it was last computed
    for agent in agents:
        for row in (r for r in rows if r.agent == agent):
            if row.kind == "model":
                tokens = min(burst, tokens + (now - refilled) * rate)
                if tokens < 1.0:
                    wait = (1.0 - tokens) / rate
                    now, waited, tokens = now + wait, waited + wait, 1.0
                tokens, refilled = tokens - 1.0, now
            now += row.ran
    return now, waited


def summary(timeline: Timeline, results: dict[str, AgentResult], width: int = 80) -> str:
    """The numbers under the timeline: calls, peaks per limit, waits, timeouts, wall time."""
    models = [r for r in timeline.rows if r.kind == "model"]
    tools = [r for r in timeline.rows if r.kind == "tool"]
    rate, burst = MODEL_RATE
    # on the real clock every call waits a few microseconds: count only waits one can see
    model_waits = [r for r in models if r.waited >= _VISIBLE_WAIT]
    tool_waits = [r for r in tools if r.waited >= _VISIBLE_WAIT]
    timeouts = [r for r in tools if r.status == "timeout"]
    wall = timeline.end
    sequential, rate_waits = one_at_a_time(timeline.rows, [p.name for p in PLANS], rate, burst)
    per_agent = ", ".join(
        f"{p.name} {peak(r for r in tools if r.agent == p.name)}/{p.limit}" for p in PLANS
    )
    per_tool = ", ".join(
        f"{name} {peak(r for r in tools if r.name == name)}/{limit}"
        for name, limit in TOOL_LIMITS.items()
    )
    timed_out = ", ".join(f"{r.name} ({r.agent})" for r in timeouts)
    lines = [
        "Summary",
        f"  model calls  {len(models):>5}  shared rate limit {rate:g}/s (burst {burst:g}): "
        f"{len(model_waits)} waited, {_total(model_waits)}",
        f"  tool calls   {len(tools):>5}  {len(tool_waits)} waited for a limit, "
        f"{_total(tool_waits)}",
        f"  peak/limit          per agent: {per_agent}",
        f"                      per tool: {per_tool}",
        f"  timeouts     {len(timeouts):>5}  "
        + (
            f"{timed_out} after {TOOL_TIMEOUT:g} s; the model read it, recovered"
            if timeouts
            else ""
        ),
        f"  wall time  {wall:5.1f} s  {_speedup(sequential, wall)} one call at a time "
        "under the same limits:",
        f"{'':22}{sequential:.1f} s, of which {rate_waits:.1f} s waiting for the model rate limit",
        "",
        "Answers",
    ]
    for plan in PLANS:
        result = results[plan.name]
        lines.append(f"  {plan.name:<9} {result.output}")
    return "\n".join(_fit(line, width) for line in lines)


def _speedup(sequential: float, wall: float) -> str:
    if wall <= 0.0 or sequential <= 0.0:
        return "as fast as"
    if round(sequential / wall, 1) >= 1.0:  # "1.0x slower" would only be rounding noise
        return f"{sequential / wall:.1f}x faster than"
    return f"{wall / sequential:.1f}x slower than"


def _total(rows: list[Row]) -> str:
    return f"{sum(r.waited for r in rows):.1f} s in all"


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


async def _demo(
    width: int,
    ascii_only: bool,
    model: Service[ChatRequest, StepOutcome] | None,
    live: Console | None = None,
) -> tuple[str, str]:
    timeline = Timeline()
    agents = build(timeline, model)
    timeline.begin()
    if model is None:
        results = await _run(agents, live, ascii_only)
    else:
        async with model:  # closes the client the model built
            results = await _run(agents, live, ascii_only)
    names = [plan.name for plan in PLANS]
    return timeline.render(names, width=width, ascii_only=ascii_only), summary(
        timeline, results, width
    )


async def _run(
    agents: list[tuple[AgentPlan, Agent]], live: Console | None, ascii_only: bool
) -> dict[str, AgentResult]:
    """Runs the agents; with a console, under a live view of their limits."""
    if live is None:
        return await run_agents(agents)
    from .. import monitor

    view = monitor.live(
        *(agent for _, agent in agents),
        total=len(agents),
        console=live,
        title="towerpy demo",
        ascii_only=ascii_only,
    )
    async with view:
        return await run_agents(agents, done=view.advance)


def main(
    *,
    real_time: bool,
    backend: str,
    ascii_only: bool,
    width: int,
    model: Service[ChatRequest, StepOutcome] | None = None,
    model_name: str | None = None,
    scene: str = "agents",
    live: bool = False,
) -> int:
    """Runs the demo and prints the timeline and the summary; returns the exit status.

    With ``model`` (a real provider, from ``--model``), every agent talks to it instead of its
    scripted model, on the real clock. ``scene="outage"`` runs the outage scene instead
    (`towerpy._demo.outage`). With ``live``, a view of the limits at work is drawn while the
    agents run (`towerpy.monitor.live`), before the timeline.
    """
    if model is not None:
        real_time = True  # a real server answers in real time
    options: dict[str, Any] = {}
    if not real_time:
        if backend == "trio":
            from trio.testing import MockClock

            options = {"clock": MockClock(autojump_threshold=0)}
        else:
            options = {"loop_factory": VirtualTimeEventLoop}
    if not ascii_only:
        encoding = getattr(sys.stdout, "encoding", None) or ""
        ascii_only = encoding.lower().replace("-", "") not in ("utf8", "utf16", "utf32")
    clock = "real time" if real_time else "virtual time"
    if scene == "outage":
        from . import outage

        down_from, down_to = outage.OUTAGE
        print(
            _fit(
                f"towerpy demo, outage: {outage.AGENTS} agents, a Balance of two providers "
                f"with circuit breakers",
                width,
            )
        )
        print(
            _fit(f"alpha is down from {down_from:g} s to {down_to:g} s ({backend}, {clock})", width)
        )
        print()
        drawn, text = anyio.run(
            outage.scene, width, ascii_only, backend=backend, backend_options=options
        )
        print(drawn)
        print()
        print(text)
        return 0
    print(
        _fit(
            f"towerpy demo: {len(PLANS)} agents, parallel tools, shared limits "
            f"({backend}, {clock})",
            width,
        )
    )
    if model_name:
        print(_fit(f"every agent talks to the real model {model_name}", width))
    print()
    console = None
    if live:
        from rich.console import Console

        console = Console(width=width)
    timeline, text = anyio.run(
        _demo, width, ascii_only, model, console, backend=backend, backend_options=options
    )
    if live:
        print()
    print(timeline)
    print()
    print(text)
    return 0
