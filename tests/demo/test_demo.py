"""The demo's scenario keeps its limits, and its timeline draws what happened."""

from __future__ import annotations

import operator

import anyio
import pytest

from towerpy._demo import peak, summary
from towerpy._demo.scenario import MODEL_RATE, PLANS, TOOL_LIMITS, TOOL_TIMEOUT, build, run_agents
from towerpy._demo.timeline import Row, Timeline


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
