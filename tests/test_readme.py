"""The README starts with the commands to run the demo and the tests, and CI runs the same.

Its python blocks run in tests/test_docs.py, with every other page's.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


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
