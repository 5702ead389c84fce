"""estimate_tokens: input from messages, tool calls and specs, plus the output allowance."""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

import pytest

from towerpy.llm import ChatRequest, Message, ToolCall, estimate_tokens
from towerpy.llm import estimate as estimate_module
from towerpy.llm.estimate import DEFAULT_OUTPUT_TOKENS, count_text_tokens
from towerpy.tools import ToolSpec

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def fresh_counter() -> Iterator[None]:
    """Makes the next estimate choose its counter again, and restores the choice after."""
    saved = estimate_module._counter
    estimate_module._counter = None
    yield
    estimate_module._counter = saved


def test_an_empty_conversation_costs_the_framing_and_the_output_allowance() -> None:
    request = ChatRequest(messages=[])
    assert estimate_tokens(request) == 3 + DEFAULT_OUTPUT_TOKENS
    assert estimate_tokens(request, output_tokens=0) == 3


def test_text_counts_one_token_per_four_bytes_without_a_tokenizer(fresh_counter: None) -> None:
    assert "tiktoken" not in sys.modules  # the test environment has none installed
    assert count_text_tokens("abcd" * 10) == 10
    assert count_text_tokens("abcde") == 2  # rounded up
    assert count_text_tokens("") == 0
    assert count_text_tokens("\u00e9" * 4) == 2  # 8 bytes of UTF-8
    assert count_text_tokens("\u4e2d" * 4) == 3  # 12 bytes: scripts of more bytes cost more
    assert count_text_tokens("\ud800") == 1  # a lone surrogate counts, never raises


def test_every_part_of_the_request_is_counted() -> None:
    def count(text: str) -> int:
        return len(text)  # one token per character: easy to add up

    call = ToolCall(id="c1", name="get", arguments={"a": 1})
    request = ChatRequest(
        messages=[
            Message.system("sys"),
            Message.user("hello"),
            Message.assistant("ok", tool_calls=[call]),
            Message(role="tool", content="42", tool_call_id="c1", name="get"),
            Message.assistant(None, [ToolCall(id="c2", name="x", raw_arguments="{bad")]),
        ],
        tools=[ToolSpec(name="get", description="Gets.", parameters={"type": "object"})],
    )
    messages = 5 * 4 + len("sys") + len("hello") + len("ok") + len("42")
    calls = (4 + len("get") + len('{"a":1}')) + (4 + len("x") + len("{bad"))
    tools = 8 + len("get") + len("Gets.") + len('{"type":"object"}')
    expected = 3 + messages + calls + tools + 100
    assert estimate_tokens(request, output_tokens=100, count=count) == expected


def test_a_longer_conversation_costs_more() -> None:
    short = ChatRequest(messages=[Message.user("hi")])
    long = ChatRequest(messages=[Message.user("hi " * 1000)])
    assert estimate_tokens(long) - estimate_tokens(short) == pytest.approx(750, abs=2)


def test_a_negative_output_allowance_is_refused() -> None:
    with pytest.raises(ValueError, match="output_tokens must be >= 0"):
        estimate_tokens(ChatRequest(messages=[]), output_tokens=-1)


def _fake_tiktoken(fail: bool) -> types.ModuleType:
    module = types.ModuleType("tiktoken")

    class Encoding:
        def encode(self, text: str, disallowed_special: Any = None) -> list[str]:
            assert disallowed_special == ()  # special tokens in text are text
            return text.split()

    def get_encoding(name: str) -> Encoding:
        assert name == "o200k_base"
        if fail:
            raise OSError("cannot download the encoding: offline")
        return Encoding()

    module.get_encoding = get_encoding  # type: ignore[attr-defined]
    return module


def test_tiktoken_counts_when_it_is_installed(
    fresh_counter: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", _fake_tiktoken(fail=False))
    assert count_text_tokens("three words here <|endoftext|>") == 4
    request = ChatRequest(messages=[Message.user("a b c")])
    assert estimate_tokens(request, output_tokens=0) == 3 + 4 + 3


def test_characters_count_when_tiktoken_cannot_load_its_encoding(
    fresh_counter: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", _fake_tiktoken(fail=True))
    assert count_text_tokens("abcd" * 3) == 3
