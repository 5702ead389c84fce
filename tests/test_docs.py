"""Every ```python block of README.md and docs/ runs as written, or says why it cannot.

Each block runs by default, as a program of its own: in a fresh interpreter (a subprocess, at
most `BLOCK_TIMEOUT` seconds), with no API key in its environment. Asynchronous examples run
themselves (``anyio.run(main)``); a top-level ``await`` is a ``SyntaxError`` there, as it is
for a reader who pastes the block into a script. A line ``print(...)  # text`` means that
``text`` must be in what the block prints.

A block that cannot run like that says so in an HTML comment on the line right before its
fence (invisible on the rendered page); several comments may be stacked there:

- ``<!-- fragment -->``: not a program on its own (methods without their class, a test body,
  names defined elsewhere). It is compiled (top-level ``await`` allowed), not run.
- ``<!-- continues -->``: it uses what the blocks before it on the page define, and runs after
  them as one program.
- ``<!-- requires: OPENAI_API_KEY -->`` (or ``ANTHROPIC_API_KEY``, or both, comma-separated):
  it talks to a provider. It runs against a local fake provider (tests/llm/fake_provider.py),
  the key and ``*_BASE_URL`` variables pointing at it.

Blocks that talk to Redis read ``REDIS_URL``, which points at the Redis the tests use
(``TOWERPY_REDIS_URL``, as `.ci/run` sets it; else the examples' default, localhost:6379).

Any other comment right before a block, or one of these that is not right before a python
block, fails the test: nothing is skipped silently.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from .llm.fake_provider import FakeProvider, Recorded, Reply
from .llm.provider_kit import ANTHROPIC, OPENAI
from .llm.sse import pieces_for, streamed

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK_TIMEOUT = 45.0  # seconds; under the per-test timeout, so a slow block says which it is

# a fence may be indented (a block inside a list item): its text is dedented to run
_FENCE = re.compile(r"^([ \t]*)```(\S*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE)
_COMMENT = re.compile(r"^<!--(.*?)-->[ \t]*$")
_MARKER = re.compile(r"<!--\s*(fragment|continues|requires\b)", re.IGNORECASE)
_KEYS = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}


@dataclass(frozen=True)
class Block:
    """One python block of a page, with what its markers say."""

    page: str
    line: int
    source: str  # the block's own text
    program: str  # what runs: the blocks it continues, then its own text
    fragment: bool
    requires: frozenset[str]

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(text: str, page: str = "page.md") -> list[Block]:
    """The python blocks of a markdown page; raises ValueError on a marker it cannot read."""
    blocks: list[Block] = []
    lines = text.splitlines()
    attached: set[int] = set()  # the lines of the markers that sit before a python block
    for fence in _FENCE.finditer(text):
        language = fence.group(2).lower()
        if language not in ("python", "py", "python3"):
            continue
        line = text.count("\n", 0, fence.start()) + 1
        fragment = continues = False
        requires: set[str] = set()
        above = line - 2  # index of the line right before the fence
        while above >= 0 and (comment := _COMMENT.match(lines[above].strip())):
            attached.add(above)
            word, _, rest = comment.group(1).strip().partition(":")
            if word == "fragment" and not rest:
                fragment = True
            elif word == "continues" and not rest:
                continues = True
            elif word == "requires" and rest.strip():
                keys = {key.strip() for key in rest.split(",")}
                if not keys <= _KEYS:
                    raise ValueError(
                        f"{page}:{above + 1}: cannot provide {sorted(keys - _KEYS)}; "
                        f"a block may require {sorted(_KEYS)}"
                    )
                requires |= keys
            else:
                raise ValueError(
                    f"{page}:{above + 1}: unknown comment before a python block: "
                    f"{lines[above].strip()!r}; use <!-- fragment -->, <!-- continues --> "
                    "or <!-- requires: OPENAI_API_KEY -->"
                )
            above -= 1
        source = textwrap.dedent(fence.group(3))
        program = source
        if continues:
            if not blocks or blocks[-1].fragment:
                raise ValueError(
                    f"{page}:{line}: <!-- continues --> needs a block before it that runs"
                )
            program = blocks[-1].program + "\n" + source
            requires |= blocks[-1].requires
        if fragment and (continues or requires):
            raise ValueError(f"{page}:{line}: a fragment is not run: it cannot continue or require")
        blocks.append(Block(page, line, source, program, fragment, frozenset(requires)))
    for index, text_line in enumerate(lines):
        if _MARKER.search(text_line) and index not in attached:
            raise ValueError(
                f"{page}:{index + 1}: {text_line.strip()!r} is not on the line right before "
                "a ```python block"
            )
    return blocks


BLOCKS = [
    block
    for page in PAGES
    for block in blocks_of(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
]


def _answer(recorded: Recorded) -> Reply:
    kit = OPENAI if recorded.path.endswith("/chat/completions") else ANTHROPIC
    if isinstance(recorded.body, dict) and recorded.body.get("stream"):
        return streamed(pieces_for(kit.name, [(0.0, f"Hello from {kit.name}!")], [], usage=(9, 4)))
    return kit.text(f"Hello from {kit.name}!", usage=(9, 4))


def run(block: Block, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[Recorded]]:
    """Runs the block's program in a fresh interpreter; returns it and the provider requests."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "ANTHROPIC_"))  # a key set here must not help
    }
    env |= {"PYTHONPATH": str(ROOT / "src"), "PYTHONIOENCODING": "utf-8"}
    if "TOWERPY_REDIS_URL" in os.environ:  # the Redis examples read REDIS_URL: the tests' own
        env["REDIS_URL"] = os.environ["TOWERPY_REDIS_URL"]
    with FakeProvider() as fake:
        fake.queue(*[_answer] * 20)
        if "OPENAI_API_KEY" in block.requires:
            env |= {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": fake.url + "/v1"}
        if "ANTHROPIC_API_KEY" in block.requires:
            env |= {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        result = subprocess.run(
            [sys.executable, "-c", block.program],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=BLOCK_TIMEOUT,
            env=env,
            cwd=tmp_path,  # files a block writes land in a fresh directory
            check=False,
        )
        return result, fake.requests


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_every_python_block_runs_or_is_marked(block: Block, tmp_path: Path) -> None:
    if block.fragment:
        compile(block.source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    result, _ = run(block, tmp_path)
    assert result.returncode == 0, (
        f"{block.name} fails when run as a script (mark it if it cannot run on its own, "
        f"see tests/test_docs.py):\n{result.stderr}"
    )
    for expected in re.findall(r"print\(.*\)  # (.+)", block.source):
        assert expected in result.stdout, (block.name, expected, result.stdout)


def test_the_providers_example_talks_to_both_providers(tmp_path: Path) -> None:
    [block] = [b for b in BLOCKS if "async with gpt, claude" in b.source]
    result, requests = run(block, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Hello from openai!" in result.stdout
    assert "Hello from anthropic!" in result.stdout
    assert [r.path for r in requests] == ["/v1/chat/completions", "/v1/messages"]


def test_every_page_with_examples_is_collected() -> None:
    pages = {block.page for block in BLOCKS}
    assert {"README.md", "docs/concepts.md", "docs/providers.md", "docs/agents.md"} <= pages
    assert {page.stem for page in (ROOT / "docs" / "layers").glob("*.md")} >= {
        "concurrency_limit",
        "keyed_concurrency_limit",
        "rate_limit",
        "timeout",
        "load_shed",
        "buffer",
        "retry",
    }
    assert all(f"docs/layers/{p.name}" in pages for p in (ROOT / "docs" / "layers").glob("*.md"))
    # most examples run: a marker is the exception
    assert sum(not block.fragment for block in BLOCKS) >= 0.75 * len(BLOCKS)


PAGE = """\
Text.

```python
x = 1
```

<!-- continues -->
<!-- requires: OPENAI_API_KEY -->
```python
print(x)
```

```bash
echo not python
```

<!-- fragment -->
```py
await thing()
```
"""


def test_markers_mark_the_block_right_after_them() -> None:
    first, second, third = blocks_of(PAGE)
    assert (first.line, first.fragment, first.requires) == (3, False, frozenset())
    assert second.program == "x = 1\n\nprint(x)\n"
    assert second.requires == {"OPENAI_API_KEY"}
    assert (third.line, third.fragment) == (18, True)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<!-- fragmnet -->\n```python\nx\n```\n", "unknown comment before a python block"),
        ("<!-- requires: A_KEY -->\n```python\nx\n```\n", "cannot provide ['A_KEY']"),
        ("<!-- fragment -->\n\n```python\nx\n```\n", "not on the line right before"),
        ("<!-- fragment -->\n```bash\nx\n```\n", "not on the line right before"),
        ("<!-- continues -->\n```python\nx\n```\n", "needs a block before it that runs"),
        (
            "<!-- fragment -->\n```python\nx\n```\n<!-- continues -->\n```python\ny\n```\n",
            "needs a block before it that runs",
        ),
    ],
)
def test_a_marker_that_cannot_be_read_fails_the_collection(page: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        blocks_of(page)
