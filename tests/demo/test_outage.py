"""The outage scene: the breaker opens, the balance routes around it, no request fails."""

from __future__ import annotations

import pytest

from towerpy._demo.outage import (
    AGENTS,
    CALLS_PER_AGENT,
    FAILURES_TO_OPEN,
    OUTAGE,
    TIMEOUT,
    render,
    run_outage,
    summary,
)

pytestmark = pytest.mark.anyio


async def test_with_breakers_the_outage_fails_no_request_and_alpha_is_skipped_while_open() -> None:
    outcome = await run_outage(breakers=True)
    assert len(outcome.answered) == AGENTS * CALLS_PER_AGENT
    assert outcome.failed == []
    alpha = outcome.circuits["alpha"]
    assert alpha.opened >= 1
    assert alpha.state == "closed"  # a probe found it back
    assert alpha.rejected == 0  # the balance never sent a call into the open circuit
    assert outcome.circuits["beta"].opened == 0
    states = [state for _, state in outcome.states["alpha"]]
    assert {"open", "half_open"} <= set(states)
    down_from, down_to = OUTAGE
    hung = [c for c in outcome.on("alpha") if c.status == "timeout"]
    # each hung call is one that started while alpha was down; beyond the calls that opened
    # the circuit, only probes reach it
    assert all(down_from <= c.started - outcome.start < down_to for c in hung)
    assert all(c.ended - c.started == pytest.approx(TIMEOUT) for c in hung)
    assert FAILURES_TO_OPEN <= len(hung) <= FAILURES_TO_OPEN + 2 * alpha.opened
    served_after = [c for c in outcome.on("alpha") if c.started - outcome.start > down_to]
    assert any(c.status == "ok" for c in served_after)  # traffic spreads again afterwards


async def test_without_breakers_more_calls_hang_and_the_slowest_answers_are_slower() -> None:
    scene = await run_outage(breakers=True)
    plain = await run_outage(breakers=False)
    assert plain.failed == []  # the retries still rescue every request...
    hung = sum(1 for c in scene.on("alpha") if c.status == "timeout")
    plain_hung = sum(1 for c in plain.on("alpha") if c.status == "timeout")
    assert plain_hung > 2 * hung  # ...but many more calls wait out the timeout first
    worst = max(answered - asked for asked, answered in scene.answered)
    plain_worst = max(answered - asked for asked, answered in plain.answered)
    assert plain_worst > worst
    text = summary(scene, plain)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert f"{AGENTS * CALLS_PER_AGENT} answered, 0 failed" in text
    assert f"{plain_hung} calls hung on alpha" in text


async def test_the_timeline_shows_the_circuit_open_and_fits_the_width() -> None:
    outcome = await run_outage(breakers=True)
    lines = render(outcome, width=80).splitlines()
    assert all(len(line) <= 80 for line in lines)
    rows = {line[:15].strip(): line[15:] for line in lines[1:-1] if line[:15].strip()}
    assert set(rows) == {"alpha calls", "circuit", "beta calls", "answers"}
    alpha_circuit, beta_circuit = [line[15:] for line in lines if line.startswith("  circuit")]
    assert "▒" in alpha_circuit
    assert "◇" in alpha_circuit
    assert set(beta_circuit) == {"─"}
    assert "✕" in rows["alpha calls"]
    ascii_lines = render(outcome, width=100, ascii_only=True).splitlines()
    assert all(line.isascii() for line in ascii_lines)
    assert max(len(line) for line in ascii_lines) > 80
