"""The examples of docs/providers.md run as written, against a local server for each provider."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .fake_provider import FakeProvider, Recorded, Reply
from .provider_kit import ANTHROPIC, OPENAI

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE = ROOT / "docs" / "providers.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def answer(recorded: Recorded) -> Reply:
    kit = OPENAI if recorded.path.endswith("/chat/completions") else ANTHROPIC
    return kit.text(f"Hello from {kit.name}!", usage=(9, 4))


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_every_example_of_the_providers_page_runs(index: int) -> None:
    block = BLOCKS[index]
    with FakeProvider() as fake:
        fake.queue(*[answer] * 10)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": fake.url + "/v1",
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fake.url,
        }
        result = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, timeout=120, env=env
        )
    assert result.returncode == 0, result.stderr
    for expected in re.findall(r"print\(.*\)  # (.+)", block):
        assert expected in result.stdout, (expected, result.stdout)
    if "async with gpt, claude" in block:
        assert "Hello from openai!" in result.stdout
        assert "Hello from anthropic!" in result.stdout
        assert [r.path for r in fake.requests] == ["/v1/chat/completions", "/v1/messages"]
