"""The demo's scenario keeps its limits, and its timeline draws what happened."""

from __future__ import annotations

import operator
import re
from typing import TYPE_CHECKING

import anyio
import pytest

from towerpy._demo import one_at_a_time, peak, summary
from towerpy._demo.scenario import MODEL_RATE, PLANS, TOOL_LIMITS, TOOL_TIMEOUT, build, run_agents
from towerpy._demo.timeline import Row, Timeline
from towerpy.llm import ChatRequest, Message, ScriptedModel, ToolCall

if TYPE_CHECKING:
    from towerpy.llm import AgentResult

NAMES = [plan.name for plan in PLANS]


def a_fast_model() -> ScriptedModel:
    """One model for every agent, answering in 50 ms: read a file, then answer."""

    def answer(request: ChatRequest) -> Message:
        if any(m.role == "tool" for m in request.messages):
            return Message.assistant("done")
        call = ToolCall(id="1", name="read_file", arguments={"path": "README.md"})
        return Message.assistant(tool_calls=[call])

    return ScriptedModel([answer] * 2 * len(PLANS), latency=0.05)


async def run_in_parallel(model: ScriptedModel | None) -> tuple[Timeline, dict[str, AgentResult]]:
    timeline = Timeline()
    agents = build(timeline, model)
    timeline.begin()
    return timeline, await run_agents(agents)


@pytest.mark.anyio
async def test_the_scenario_keeps_every_limit_and_recovers_from_its_timeout(
    anyio_backend_name: str,
) -> None:
    timeline = Timeline()
    agents = build(timeline)
    timeline.begin()
    results = await run_agents(agents)
    tools = [r for r in timeline.rows if r.kind == "tool"]
    models = [r for r in timeline.rows if r.kind == "model"]
    assert len(models) == 9
    assert len(tools) == 16
    # Calls of different agents often end at the same virtual instant. asyncio wakes them in a
    # fixed order, so the demo's timeline (and the peaks it prints) is always the same there;
    # trio breaks such ties at random (and by object identity), so on trio only the limits
    # themselves are certain, not that each one is reached.
    reached = operator.eq if anyio_backend_name == "asyncio" else operator.le
    for plan in PLANS:
        assert reached(peak(r for r in tools if r.agent == plan.name), plan.limit)
        assert results[plan.name].steps == 3
    for name, limit in TOOL_LIMITS.items():
        assert reached(peak(r for r in tools if r.name == name), limit)
    [timed_out] = [r for r in tools if r.status == "timeout"]
    assert (timed_out.agent, timed_out.name) == ("research", "fetch")
    assert timed_out.ran == pytest.approx(TOOL_TIMEOUT, abs=1e-9)
    assert "1 failed" in results["research"].output
    # the shared model budget: in any window of t seconds, at most burst + rate * t calls start
    rate, burst = MODEL_RATE
    starts = sorted(r.started for r in models if r.started is not None)
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + rate * (starts[j] - first) + 1e-9
    assert sum(r.waited for r in models) > 0
    assert timeline.end == anyio.current_time() - timeline.start


def test_peak_counts_overlapping_rows_and_touching_ones_do_not_overlap() -> None:
    def row(start: float, end: float) -> Row:
        r = Row("a", "tool", "t", "t", start)
        r.started, r.ended = start, end
        return r

    assert peak([row(0, 2), row(1, 3), row(2, 4)]) == 2
    assert peak([row(0, 1), row(1, 2)]) == 1
    assert peak([]) == 0


def test_rows_draw_waits_runs_and_timeouts_on_a_shared_time_axis() -> None:
    timeline = Timeline()
    waiting = Row("agent", "tool", "search", "search x", 0.0)
    waiting.started, waiting.ended = 1.0, 2.0
    cut = Row("agent", "tool", "fetch", "fetch y", 0.0)
    cut.started, cut.ended, cut.status = 0.0, 4.0, "timeout"
    timeline.rows += [waiting, cut]
    lines = timeline.render(["agent"], width=67, ascii_only=True).splitlines()
    columns = 67 - 27 - 1  # the label takes 27 columns
    step = 4.0 / columns
    assert lines[0].startswith(" " * 27 + "0s")
    assert lines[1].startswith("agent    search x")
    bar = lines[1][27:]
    assert bar == "." * round(1 / step) + "#" * (round(2 / step) - round(1 / step))
    assert lines[2][27:] == "#" * (columns - 1) + "X"  # the whole width
    assert lines[3].endswith("# running  . waiting for a limit  X timed out")


@pytest.mark.anyio
async def test_the_summary_fits_in_80_columns() -> None:
    timeline = Timeline()
    agents = build(timeline)
    timeline.begin()
    results = await run_agents(agents)
    text = summary(timeline, results)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text.splitlines()[0] == "Summary"


def test_one_at_a_time_makes_each_model_call_wait_for_its_token() -> None:
    rows = []
    for n in range(6):
        model = Row("a", "model", "model", f"model call {n}", 0.0)
        model.started, model.ended = 0.0, 0.1
        tool = Row("a", "tool", "t", "t", 0.0)
        tool.started, tool.ended = 5.0, 5.2  # when it ran does not matter, only how long
        rows += [model, tool]
    # 1 call/s, burst 2: the first two start at once (0 and 0.3), then one a second, from 1 s
    total, waited = one_at_a_time(rows, ["a"], rate=1.0, burst=2.0)
    assert total == pytest.approx(4.3, abs=1e-9)
    assert waited == pytest.approx(4.3 - 6 * 0.3, abs=1e-9)
    # a slower model never waits: the bucket refills while it runs
    for row in rows:
        assert row.started is not None
        row.ended = row.started + 1.0
    assert one_at_a_time(rows, ["a"], rate=1.0, burst=2.0) == pytest.approx((12.0, 0.0))


def test_one_at_a_time_replays_agent_after_agent() -> None:
    rows = []
    for agent in ("b", "a"):
        row = Row(agent, "model", "model", "model call 1", 0.0)
        row.started, row.ended = 0.0, 0.5
        rows.append(row)
    # only b's call is replayed: a is not one of the agents asked for
    assert one_at_a_time(rows, ["b"], rate=1.0, burst=1.0) == pytest.approx((0.5, 0.0))
    assert one_at_a_time(rows, ["a", "b"], rate=1.0, burst=1.0) == pytest.approx((1.5, 0.5))


@pytest.mark.parametrize("model", ["scripted", "fast"])
@pytest.mark.anyio
async def test_the_replay_takes_as_long_as_running_the_same_calls_one_at_a_time(
    model: str,
) -> None:
    timeline, _ = await run_in_parallel(None if model == "scripted" else a_fast_model())
    replayed, _ = one_at_a_time(timeline.rows, NAMES, *MODEL_RATE)
    # now run them: agent after agent, each answer's tools one at a time, same limits
    sequential = Timeline()
    agents = build(sequential, None if model == "scripted" else a_fast_model(), tool_limit=1)
    start = anyio.current_time()
    for plan, agent in agents:
        await agent.run(plan.prompt)
    assert peak(sequential.rows) == 1
    assert len(sequential.rows) == len(timeline.rows)
    assert anyio.current_time() - start == pytest.approx(replayed, abs=1e-9)


@pytest.mark.anyio
async def test_the_summary_counts_the_waits_of_a_fast_model_in_the_sequential_figure() -> None:
    timeline, results = await run_in_parallel(a_fast_model())
    text = summary(timeline, results)
    ran = sum(r.ran for r in timeline.rows)  # what "one call after another" used to say
    sequential, waited = one_at_a_time(timeline.rows, NAMES, *MODEL_RATE)
    # 6 model calls at 1/s (burst 2): the calls made one at a time are mostly waits
    assert waited > 2.0
    assert sequential == pytest.approx(ran + waited)
    found = re.search(
        r"wall time +([\d.]+) s +([\d.]+)x faster than one call at a time under the same "
        r"limits:\n +([\d.]+) s, of which ([\d.]+) s waiting for the model rate limit",
        text,
    )
    assert found is not None, text
    wall, ratio, shown, shown_waited = map(float, found.groups())
    assert wall == pytest.approx(timeline.end, abs=0.05)
    assert shown == pytest.approx(sequential, abs=0.05)
    assert shown_waited == pytest.approx(waited, abs=0.05)
    assert ratio == pytest.approx(sequential / timeline.end, abs=0.05)


def test_the_comparison_says_slower_only_when_it_is() -> None:
    from towerpy._demo import _speedup

    assert _speedup(20.8, 7.5) == "2.8x faster than"
    assert _speedup(4.05, 4.050000001) == "1.0x faster than"  # the same, up to rounding
    assert _speedup(3.0, 4.5) == "1.5x slower than"
    assert _speedup(0.0, 0.0) == "as fast as"
