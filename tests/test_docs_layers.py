"""The examples of the layer pages in docs/layers run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs" / "layers").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[page.stem for page in PAGES])
def test_every_example_of_the_page_runs(page: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    assert blocks, f"{page.name} has no example"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, timeout=120, env=env
        )
        assert result.returncode == 0, result.stderr
        for expected in re.findall(r"print\(.*\)  # (.+)", block):
            assert expected in result.stdout, (expected, result.stdout)


def test_there_is_a_page_for_each_layer() -> None:
    assert {page.stem for page in PAGES} >= {
        "concurrency_limit",
        "keyed_concurrency_limit",
        "rate_limit",
        "timeout",
        "load_shed",
        "buffer",
        "retry",
    }
