"""ScriptedModel.stream and Streamed: scripted answers arriving piece by piece, in virtual time."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import ScriptExhausted
from towerpy.llm import (
    ChatRequest,
    Message,
    ModelFinished,
    ScriptedModel,
    StepEvent,
    Streamed,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolCallStarted,
)

pytestmark = pytest.mark.anyio


def ask(text: str = "hi") -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)])


async def read(model: ScriptedModel, request: ChatRequest) -> list[tuple[float, StepEvent]]:
    start = anyio.current_time()
    events: list[tuple[float, StepEvent]] = []
    async with model.stream(request) as stream:
        async for event in stream:
            events.append((anyio.current_time() - start, event))  # noqa: PERF401 - timed
    return events


ADD = ToolCall(id="c1", name="add", arguments={"a": 1})
MUL = ToolCall(id="c2", name="mul", arguments={"a": 2})


async def test_a_streamed_answer_arrives_piece_by_piece_at_its_times() -> None:
    model = ScriptedModel([Streamed([(0.5, "Let "), (0.25, "me."), (1.0, ADD), (2.0, MUL)])])
    events = await read(model, ask())
    assert events[:-1] == [
        (0.5, TextDelta(text="Let ")),
        (0.75, TextDelta(text="me.")),
        (0.75, ToolCallStarted(index=0, id="c1", name="add")),
        (1.75, ToolCallComplete(index=0, call=ADD)),
        (1.75, ToolCallStarted(index=1, id="c2", name="mul")),
        (3.75, ToolCallComplete(index=1, call=MUL)),
    ]
    at, last = events[-1]
    assert at == 3.75
    assert isinstance(last, ModelFinished)
    assert last.outcome.messages[-1] == Message.assistant("Let me.", [ADD, MUL])
    assert [c.id for c in last.outcome.tool_calls] == ["c1", "c2"]
    assert not last.outcome.done
    assert last.outcome.usage is not None


async def test_call_waits_the_whole_duration_and_returns_the_same_outcome() -> None:
    script = [Streamed([(0.5, "Let "), (1.0, ADD)])]
    streamed = (await read(ScriptedModel(script), ask()))[-1][1]
    start = anyio.current_time()
    outcome = await ScriptedModel(script, latency=1.0)(ask())
    assert anyio.current_time() - start == 2.5  # the latency, then the answer's 1.5 s
    assert isinstance(streamed, ModelFinished)
    assert outcome == streamed.outcome


async def test_a_message_entry_streams_at_once_after_the_latency() -> None:
    model = ScriptedModel([Message.assistant("done", [ADD])], latency=2.0)
    events = await read(model, ask())
    assert [(at, type(event).__name__) for at, event in events] == [
        (2.0, "TextDelta"),
        (2.0, "ToolCallStarted"),
        (2.0, "ToolCallComplete"),
        (2.0, "ModelFinished"),
    ]


async def test_a_function_may_answer_with_a_streamed_answer() -> None:
    def answer(request: ChatRequest) -> Streamed:
        return Streamed([(1.0, f"echo {request.messages[-1].content}")])

    async def later(request: ChatRequest) -> Streamed:
        return Streamed([(0.0, "later")])

    model = ScriptedModel([answer, later])
    events = await read(model, ask("x"))
    assert events[0] == (1.0, TextDelta(text="echo x"))
    outcome = await model(ask())
    assert outcome.messages[-1] == Message.assistant("later")


async def test_streaming_past_the_end_of_the_script_is_a_clear_error() -> None:
    model = ScriptedModel([])
    with pytest.raises(ScriptExhausted, match="called 1 times but its script has only 0"):
        await read(model, ask())


async def test_a_stream_left_early_stops_where_it_was() -> None:
    model = ScriptedModel([Streamed([(1.0, "a"), (1.0, "b"), (1.0, "c")])])
    async with model.stream(ask()) as events:
        async for event in events:
            assert event == TextDelta(text="a")
            break
    assert anyio.current_time() == 1.0
    assert model.remaining == 0  # the entry was taken all the same


@pytest.mark.parametrize(
    ("pieces", "error", "message"),
    [
        ([(1.0, "a", "b")], TypeError, "piece 0 must be a .delay, str | ToolCall. pair"),
        (["a"], TypeError, "piece 0 must be a .delay, str | ToolCall. pair"),
        ([(True, "a")], TypeError, "piece 0: the delay must be a finite number of seconds >= 0"),
        ([("1", "a")], TypeError, "piece 0: the delay must be a finite number of seconds >= 0"),
        ([(0.0, "a"), (-1.0, "b")], ValueError, "piece 1: the delay must be a finite number"),
        ([(float("inf"), "a")], ValueError, "piece 0: the delay must be a finite number"),
        ([(float("nan"), "a")], ValueError, "piece 0: the delay must be a finite number"),
        ([(1.0, 42)], TypeError, "piece 0 must be text .str. or a ToolCall, got int"),
    ],
)
def test_bad_pieces_are_refused_at_construction(
    pieces: list[Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Streamed(pieces)


def test_a_streamed_answer_knows_its_message_and_duration() -> None:
    answer = Streamed([(0.5, "a"), (1.5, ADD), (0, "b")])
    assert answer.message == Message.assistant("ab", [ADD])
    assert answer.duration == 2.0
    assert Streamed([]).message == Message.assistant()
    assert "Streamed([(0.5, 'a')" in repr(answer)


async def test_a_function_answering_something_else_is_a_clear_error() -> None:
    model = ScriptedModel([lambda request: "text"])  # type: ignore[list-item,return-value]
    with pytest.raises(TypeError, match="must return an assistant Message or a Streamed"):
        await read(model, ask())
