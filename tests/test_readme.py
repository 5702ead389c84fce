"""The README's quickstart runs as written, and CI runs the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_quickstart_runs_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "README has no python block"
    quickstart = blocks[0]
    result = subprocess.run(
        [sys.executable, "-c", quickstart], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "HELLO, WORLD"


def test_agent_example_runs_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    agent = next(block for block in blocks if "Agent(" in block)
    result = subprocess.run(
        [sys.executable, "-c", agent], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "Both mild."


def test_readme_starts_with_the_test_command_that_ci_runs() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    assert first_block is not None
    assert "pip install -e '.[dev]' && python -m pytest" in first_block.group(1)
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_readme_starts_with_the_demo_command_then_the_tests() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    assert first_block is not None
    lines = first_block.group(1).splitlines()
    assert lines[0].startswith("pip install -e . && python -m towerpy demo ")
    assert lines[1].startswith("pip install -e '.[dev]' && python -m pytest ")
