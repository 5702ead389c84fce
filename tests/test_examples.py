"""The examples in docs/ run as written."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


def test_the_multi_agent_example_runs_as_a_script() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "multi_agent.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith('north: 3 cities: {"city": "Oslo", "celsius": 12}')
    assert lines[0].endswith("(2 model calls)")
    assert lines[1].startswith('south: 2 cities: {"city": "Lima", "celsius": 12}')


@pytest.mark.anyio
async def test_the_multi_agent_example_shares_its_limits() -> None:
    import anyio

    module = runpy.run_path(str(EXAMPLES / "multi_agent.py"), run_name="example")
    results = await module["main"]()
    assert sorted(results) == ["north", "south"]
    assert all(result.steps == 2 for result in results.values())
    # model calls take 0.2 s; the five lookups of 0.3 s run at most two at once across both
    # agents (without that shared bound, both agents would be done at 0.7 s)
    assert anyio.current_time() == pytest.approx(0.2 + 3 * 0.3 + 0.2, abs=1e-9)
