"""``python -m towerpy demo --live``: the live view over the demo's limits, then the timeline."""

from __future__ import annotations

import sys

import pytest

from towerpy import __main__ as cli
from towerpy._demo import main

FINAL_VIEW = """\
towerpy demo · 7.5 s
limit                    in flight  waiting      tokens
rate limit                                0  0.5/2 +1/s
keyed limit [search]           0/2        0
keyed limit [run_tests]        0/1        0
runs ██████████████████████████████ 3/3 100%   elapsed 7.5 s   ETA 0.0 s
waited  concurrency_limit 4x 3.8 s, rate_limit 4x 2.1 s
retries 0   timeouts 1   shed 0
"""


def test_the_live_demo_draws_its_limits_then_keeps_the_timeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # in virtual time, on a console that is not a terminal: the last drawing only
    assert main(real_time=False, backend="asyncio", ascii_only=False, width=80, live=True) == 0
    out = capsys.readouterr().out
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0].startswith("towerpy demo: 3 agents")
    view = "\n".join(lines[2:10]) + "\n"
    assert view == FINAL_VIEW
    assert "Summary" in lines
    assert any("research model call 1" in line for line in lines)  # the static timeline


def test_the_live_demo_draws_in_ascii_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(real_time=False, backend="trio", ascii_only=True, width=80, live=True) == 0
    out = capsys.readouterr().out
    assert "\ntowerpy demo - " in out  # trio breaks ties at random: the times may differ
    assert "runs ############################## 3/3 100%" in out
    assert "█" not in out


def test_live_needs_rich_and_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # as if it were not installed
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--live"])
    assert exit_info.value.code == 2
    assert "--live needs rich: pip install 'towerpy[rich]'" in capsys.readouterr().err


def test_help_tells_of_the_live_view(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "--live" in capsys.readouterr().out


def test_live_goes_with_the_agents_scene(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--scene", "outage", "--live"])
    assert exit_info.value.code == 2
    assert "--live goes with the agents scene" in capsys.readouterr().err
