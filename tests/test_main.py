"""``python -m towerpy``: the demo runs as the README says, and its summary adds up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def towerpy(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "towerpy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_the_demo_runs_and_prints_its_summary() -> None:
    result = towerpy("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].startswith("towerpy demo: 3 agents")
    summary = lines[lines.index("Summary") :]
    assert summary[1].split()[:3] == ["model", "calls", "9"]
    assert "shared rate limit 1/s (burst 2)" in summary[1]
    assert summary[2].split()[:3] == ["tool", "calls", "16"]
    assert summary[3].endswith("per agent: research 3/3, coding 2/2, ops 2/2")
    assert summary[4].endswith("per tool: search 2/2, run_tests 1/1")
    assert summary[5].split()[:2] == ["timeouts", "1"]
    assert "fetch (research) after 2 s" in summary[5]
    assert summary[6].split()[:2] == ["wall", "time"]
    assert "2.8x faster than one call at a time under the same limits:" in summary[6]
    assert summary[7].strip() == "20.8 s, of which 0.0 s waiting for the model rate limit"
    assert "research  Rate limits, concurrency, timeouts. (6 tool results, 1 failed)" in out
    assert all(len(line) <= 80 for line in lines)


def test_the_demo_is_the_same_every_run_in_virtual_time() -> None:
    assert towerpy("demo").stdout == towerpy("demo").stdout


def test_the_demo_draws_in_ascii_on_trio_when_asked() -> None:
    result = towerpy("demo", "--ascii", "--backend", "trio", "--width", "100")
    assert result.returncode == 0, result.stderr
    assert "█" not in result.stdout
    assert "# running  . waiting for a limit  X timed out" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80


def test_help_explains_the_demo_and_its_options() -> None:
    result = towerpy("demo", "--help")
    assert result.returncode == 0
    for words in ("offline", "virtual time", "--real-time", "--backend", "--ascii", "timeline"):
        assert words in result.stdout
    top = towerpy("--help")
    assert "demo" in top.stdout


@pytest.mark.parametrize(("args", "message"), [(["demo", "--width", "40"], "at least 60")])
def test_bad_options_are_explained(args: list[str], message: str) -> None:
    result = towerpy(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_no_command_prints_help() -> None:
    result = towerpy()
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_the_outage_scene_runs_offline_and_the_same_every_time() -> None:
    result = towerpy("demo", "--scene", "outage")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("towerpy demo, outage: 6 agents")
    summary = lines[lines.index("Summary") :]
    assert summary[1].startswith("  requests   120 sent, 120 answered, 0 failed")
    assert "alpha      circuit: open" in result.stdout
    assert all(len(line) <= 80 for line in lines)
    assert towerpy("demo", "--scene", "outage", "--backend", "trio").returncode == 0
    assert towerpy("demo", "--scene", "outage").stdout == result.stdout


def test_the_outage_scene_refuses_a_real_model() -> None:
    result = towerpy("demo", "--scene", "outage", "--model", "openai:gpt-4o-mini")
    assert result.returncode == 2
    assert "--model goes with the agents scene" in result.stderr
