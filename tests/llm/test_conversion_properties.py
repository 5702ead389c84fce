"""Properties of the conversions, over conversations hypothesis draws."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy.llm import Message, ToolCall
from towerpy.llm._anthropic_wire import to_wire
from towerpy.llm._openai_wire import to_wire_messages
from towerpy.llm._sdk import parse_arguments
from towerpy.tools import ToolOutput

ids = st.text(min_size=1, max_size=12)
texts = st.one_of(st.none(), st.text(max_size=20))
arguments = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3)


@st.composite
def tool_batch(draw: st.DrawFn) -> list[Message]:
    """An assistant message with tool calls, then one result per call (some failed)."""
    call_ids = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    calls = [
        ToolCall(
            id=call_id,
            name="f",
            arguments=draw(arguments),
            raw_arguments=draw(st.none() | st.text(max_size=10)),
        )
        for call_id in call_ids
    ]
    results = [
        Message.tool(
            ToolOutput(
                id=c.id, name="f", content=draw(st.text(max_size=10)), is_error=draw(st.booleans())
            )
        )
        for c in calls
    ]
    return [Message.assistant(draw(texts), calls), *results]


turn = st.one_of(
    st.builds(lambda t: [Message.user(t or "")], texts),
    st.builds(lambda t: [Message.system(t or "")], texts),
    st.builds(lambda t: [Message.assistant(t)], texts),
    tool_batch(),
)
conversations = st.lists(turn, max_size=8).map(lambda turns: [m for t in turns for m in t])


@settings(deadline=None, max_examples=300)
@given(conversations)
def test_anthropic_turns_alternate_with_valid_ids_and_results_first(
    messages: list[Message],
) -> None:
    system, turns = to_wire(messages)
    expected_system = [m.content for m in messages if m.role == "system" and m.content]
    assert system == ("\n\n".join(expected_system) if expected_system else None)
    for before, after in itertools.pairwise(turns):
        assert before["role"] != after["role"]  # consecutive turns were merged
    results_seen = 0
    for turn_ in turns:
        blocks = turn_["content"]
        assert blocks
        kinds = [b["type"] for b in blocks]
        # tool results come first in a user message, before any text
        assert kinds == sorted(kinds, key=lambda k: k != "tool_result")
        for block in blocks:
            if block["type"] == "text":
                assert block["text"].strip()
            elif block["type"] == "tool_use":
                assert re.fullmatch(r"[a-zA-Z0-9_-]+", block["id"])
                assert isinstance(block["input"], dict)
            else:
                results_seen += 1
                assert re.fullmatch(r"[a-zA-Z0-9_-]+", block["tool_use_id"])
                assert block.get("content", "x")  # never an empty content
    assert results_seen == sum(m.role == "tool" for m in messages)
    # every result still pairs with its call after the ids were rewritten
    use_ids = {b["id"] for t in turns for b in t["content"] if b["type"] == "tool_use"}
    result_ids = [
        b["tool_use_id"] for t in turns for b in t["content"] if b["type"] == "tool_result"
    ]
    assert set(result_ids) <= use_ids
    call_ids = {c.id for m in messages for c in m.tool_calls}
    assert len(use_ids) == len(call_ids)  # distinct ids stay distinct


@settings(deadline=None, max_examples=300)
@given(conversations)
def test_openai_keeps_one_message_per_message_and_arguments_verbatim(
    messages: list[Message],
) -> None:
    wire = to_wire_messages(messages)
    assert [w["role"] for w in wire] == [m.role for m in messages]
    for message, sent in zip(messages, wire, strict=True):
        assert "name" not in sent
        if message.role == "tool":
            assert sent["tool_call_id"] == message.tool_call_id
            assert sent["content"].endswith(message.content or "")
            assert sent["content"].startswith("Error: ") or not message.is_error
        for call, wire_call in zip(message.tool_calls, sent.get("tool_calls", []), strict=True):
            text = wire_call["function"]["arguments"]
            if call.raw_arguments is not None:
                assert text == call.raw_arguments
            else:
                assert json.loads(text) == call.arguments


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(deadline=None, max_examples=300)
@given(st.one_of(json_values.map(json.dumps), st.text(max_size=30)))
def test_argument_text_is_either_an_object_or_kept_whole(text: str) -> None:
    parsed, raw = parse_arguments(text)
    if raw is None:
        assert parsed == (json.loads(text) if text.strip() else {})
    else:
        assert (parsed, raw) == ({}, text)
