"""Type checkers see the types of built services: tests/typing_cases.py and the docs' examples.

mypy and pyright run over tests/typing_cases.py (its `assert_type` calls are the expectations;
each `# type: ignore[...]` marks a mistake that must be reported, and an unneeded one fails) and
over the examples of docs/concepts.md, as a user would check them: `--strict`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "typing_cases.py"
CONCEPTS = ROOT / "docs" / "concepts.md"
# a checker run from a cold cache takes about 20 s of CPU (towerpy, pydantic, anyio, ...)
CHECKER_SECONDS = 240

pytestmark = pytest.mark.timeout(CHECKER_SECONDS + 30)


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--warn-unused-ignores", *args],
        capture_output=True,
        text=True,
        timeout=CHECKER_SECONDS,
        cwd=ROOT,
        env=env,
    )


def run_pyright(path: Path, tmp_path: Path) -> dict[str, object]:
    config = tmp_path / "pyrightconfig.json"
    config.write_text(
        json.dumps(
            {
                "typeCheckingMode": "strict",
                "reportUnnecessaryTypeIgnoreComment": "error",
                "pythonVersion": "3.11",
                "extraPaths": [str(ROOT / "src")],
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyright",
            "--outputjson",
            "--project",
            str(config),
            "--pythonpath",
            sys.executable,
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=CHECKER_SECONDS,
    )
    report: dict[str, object] = json.loads(result.stdout)
    return report


def concepts_module() -> str:
    """The page's `LogRequests` example, then the builder example that stacks it."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", CONCEPTS.read_text(), flags=re.DOTALL)
    middleware = next(block for block in blocks if "class LogRequests" in block)
    builder = next(block for block in blocks if ".layer(log_layer)" in block)
    checks = (
        "from typing_extensions import assert_type\n"
        "from towerpy import Service\n"
        "assert_type(svc, Service[str, str])\n"
        "assert_type(log_layer.layer(svc), Service[str, str])\n"
    )
    return middleware + builder + checks


def test_the_builder_and_middleware_types_hold_under_mypy() -> None:
    result = run_mypy("--config-file", "pyproject.toml", str(CASES))  # CI's mypy step warms it
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 1 source file" in result.stdout


def test_the_builder_and_middleware_types_hold_under_pyright(tmp_path: Path) -> None:
    report = run_pyright(CASES, tmp_path)
    assert report["generalDiagnostics"] == []
    assert report["summary"] == {
        "filesAnalyzed": 1,
        "errorCount": 0,
        "warningCount": 0,
        "informationCount": 0,
        "timeInSec": report["summary"]["timeInSec"],  # type: ignore[index]
    }


def test_the_concepts_page_examples_pass_mypy_strict_and_keep_their_types(tmp_path: Path) -> None:
    module = tmp_path / "concepts_example.py"
    module.write_text(concepts_module())
    # a user's own check: --strict and no configuration of ours (a cache of its own)
    cache = str(ROOT / ".mypy_cache" / "docs-strict")
    result = run_mypy("--strict", "--config-file=", "--cache-dir", cache, str(module))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_concepts_page_examples_pass_pyright_strict(tmp_path: Path) -> None:
    module = tmp_path / "concepts_example.py"
    module.write_text(concepts_module())
    report = run_pyright(module, tmp_path)
    assert report["generalDiagnostics"] == []
