"""The examples of docs/distributed.md run as written, against the test server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .support import SHARED_URL

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE = ROOT / "docs" / "distributed.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


@pytest.mark.real_clock
@pytest.mark.parametrize("block", BLOCKS, ids=[f"example-{i}" for i in range(len(BLOCKS))])
def test_every_example_of_the_page_runs(block: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "REDIS_URL": SHARED_URL}
    result = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    expected = re.findall(r"print\(.*\)  # (.+)", block)
    assert expected
    for line in expected:
        assert line in result.stdout, (line, result.stdout)
