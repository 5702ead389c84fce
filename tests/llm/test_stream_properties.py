"""Properties of the stream readers, over answers hypothesis draws and cuts into pieces.

However an answer is cut into chunks (OpenAI) or events (Anthropic), the streamed outcome is
the one the same answer read whole gives, the text deltas join into its text, and the calls
announced complete are its calls, in order.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import anthropic.types
import openai.types.chat
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from towerpy.llm import ChatRequest, Message, ModelFinished, StepEvent, TextDelta, ToolCallComplete
from towerpy.llm._anthropic_stream import EventReader
from towerpy.llm._anthropic_wire import to_outcome as anthropic_outcome
from towerpy.llm._openai_stream import ChunkReader
from towerpy.llm._openai_wire import to_outcome as openai_outcome

from .provider_kit import anthropic_message, openai_completion
from .sse import anthropic_pieces, openai_pieces

REQUEST = ChatRequest(messages=[Message.user("go")])
ANTHROPIC_EVENT: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)

values = st.integers(-5, 5) | st.text(max_size=6) | st.booleans() | st.none()
objects = st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=3)


@st.composite
def cut(draw: st.DrawFn, text: str) -> list[str]:
    """``text`` in pieces, at points hypothesis picks (no piece empty)."""
    if not text:
        return []
    points = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
    bounds = [0, *(p for p in points if p < len(text)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@st.composite
def answers(draw: st.DrawFn, *, raw: bool) -> tuple[str | None, list[tuple[str, str, str]]]:
    text = draw(st.none() | st.text(min_size=1, max_size=20))
    count = draw(st.integers(0, 3))
    calls = []
    for n in range(count):
        if raw and draw(st.booleans()):
            arguments = draw(st.sampled_from(['{"a": ', "[1, 2]", "nope", '"text"', "{}x"]))
        else:
            arguments = json.dumps(draw(objects))
        calls.append((f"call_{n}", draw(st.sampled_from(["f", "get_weather"])), arguments))
    return text, calls


def read(reader: Any, items: list[Any]) -> list[StepEvent]:
    events: list[StepEvent] = []
    for item in items:
        events.extend(reader.feed(item))
    events.extend(reader.finish())
    return events


def check(events: list[StepEvent], whole: Any) -> None:
    last = events[-1]
    assert isinstance(last, ModelFinished)
    assert last.outcome == whole
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == (whole.messages[-1].content or "")
    announced = [e.call for e in events if isinstance(e, ToolCallComplete)]
    assert announced == whole.messages[-1].tool_calls
    assert [e.index for e in events if isinstance(e, ToolCallComplete)] == list(
        range(len(announced))
    )


@settings(deadline=None, max_examples=200)
@given(st.data())
def test_an_openai_answer_reads_the_same_streamed_or_whole(data: st.DataObject) -> None:
    text, calls = data.draw(answers(raw=True))
    pieces = openai_pieces(
        [(0.0, piece) for piece in data.draw(cut(text or ""))],
        [(0.0, cid, name, [(0.0, p) for p in data.draw(cut(args))]) for cid, name, args in calls],
        usage=(7, 3),
    )
    chunks = [
        openai.types.chat.ChatCompletionChunk.model_validate(json.loads(body[len(b"data: ") :]))
        for _, body in pieces
        if body != b"data: [DONE]\n\n"
    ]
    completion = openai.types.chat.ChatCompletion.model_validate(
        openai_completion(text, calls, usage=(7, 3))
    )
    check(read(ChunkReader(REQUEST), chunks), openai_outcome(REQUEST, completion))


@settings(deadline=None, max_examples=200)
@given(st.data())
def test_an_anthropic_answer_reads_the_same_streamed_or_whole(data: st.DataObject) -> None:
    text, calls = data.draw(answers(raw=False))
    pieces = anthropic_pieces(
        [(0.0, piece) for piece in data.draw(cut(text or ""))],
        [(0.0, cid, name, [(0.0, p) for p in data.draw(cut(args))]) for cid, name, args in calls],
        usage=(7, 3),
    )
    events = [
        ANTHROPIC_EVENT.validate_python(json.loads(body.split(b"data: ", 1)[1]))
        for _, body in pieces
    ]
    uses = [(cid, name, json.loads(args)) for cid, name, args in calls]
    message = anthropic.types.Message.model_validate(anthropic_message(text, uses, usage=(7, 3)))
    check(read(EventReader(REQUEST), events), anthropic_outcome(REQUEST, message))
