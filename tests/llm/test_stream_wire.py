"""stream() on both adapters: server-sent-event bodies read through the official SDKs.

Recorded bodies go over a real local HTTP server (`FakeProvider`, real clock); timed ones go
through an in-process transport, in virtual time, so "the k-th call completes at t = k" is
exact. Both SDKs run on asyncio and trio.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from towerpy.errors import ProviderError, ProviderUnavailable, RateLimited
from towerpy.llm import (
    Agent,
    ChatRequest,
    Message,
    ModelFinished,
    RunFinished,
    StepEvent,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolCallStarted,
    ToolFinished,
    Usage,
)
from towerpy.tools import JoinPolicy, ToolRouter, ToolSpec, tool

from .fake_provider import FakeProvider, InProcessProvider, Reply
from .provider_kit import KITS, Kit, anthropic_message
from .sse import (
    RECORDED_CALLS,
    RECORDED_TEXT,
    anthropic_pieces,
    openai_pieces,
    pieces_for,
    recorded,
    streamed,
)

# On trio, the SDKs leave generators of their own unexhausted (openai's stops reading at
# "data: [DONE]"; both when a stream is left early, as is httpx's), and trio warns when they
# are collected. The response itself is closed (the tests check it); only these warnings of
# the SDKs' internals are let through, every other warning still fails a test.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Async generator 'openai.:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Async generator 'anthropic.:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Async generator 'httpx:ResourceWarning"),
]

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def ask(text: str = "weather in Oslo and Lima?") -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)], tools=[WEATHER])


async def read(
    model: Any, request: ChatRequest, into: list[tuple[float, StepEvent]] | None = None
) -> list[tuple[float, StepEvent]]:
    """Every event with its time, gathered in ``into`` (kept when the stream raises)."""
    events = [] if into is None else into
    async with model.stream(request) as stream:
        async for event in stream:
            events.append((anyio.current_time(), event))
    return events


async def _drain(agent: Agent) -> None:
    async with agent.run_stream("go") as events:
        async for _ in events:
            pass


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.param
    return kit


# -- recorded bodies over a real socket ---------------------------------------------------------


@pytest.mark.real_clock
async def test_a_recorded_stream_reads_into_text_calls_and_the_outcome(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    fake_provider.queue(recorded(provider.name))
    request = ask()
    model = provider.model(fake_provider)
    async with model.client:
        events = [event for _, event in await read(model, request)]
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == ["Checking", " both."]
    (first_id, first), (second_id, second) = RECORDED_CALLS[provider.name]
    assert [e for e in events if not isinstance(e, TextDelta | ModelFinished)] == [
        ToolCallStarted(index=0, id=first_id, name="get_weather"),
        ToolCallComplete(index=0, call=ToolCall(id=first_id, name="get_weather", arguments=first)),
        ToolCallStarted(index=1, id=second_id, name="get_weather"),
        ToolCallComplete(
            index=1, call=ToolCall(id=second_id, name="get_weather", arguments=second)
        ),
    ]
    last = events[-1]
    assert isinstance(last, ModelFinished)
    outcome = last.outcome
    assert not outcome.done
    assert outcome.messages[:-1] == request.messages
    assert outcome.messages[-1].content == RECORDED_TEXT
    assert [c.id for c in outcome.tool_calls] == [first_id, second_id]
    if provider.name == "openai":
        assert outcome.usage == Usage(input_tokens=84, output_tokens=51, cache_read_tokens=64)
        assert outcome.finish_reason == "tool_calls"
    else:
        assert outcome.usage == Usage(
            input_tokens=600, output_tokens=89, cache_read_tokens=128, cache_write_tokens=0
        )
        assert outcome.finish_reason == "tool_use"
    (sent,) = fake_provider.requests
    assert sent.body["stream"] is True
    if provider.name == "openai":
        assert sent.body["stream_options"] == {"include_usage": True}


@pytest.mark.real_clock
async def test_a_streamed_outcome_is_the_one_call_returns(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    calls = [("c1", "get_weather", '{"city": "Oslo"}'), ("c2", "get_weather", '{"city": "Lima"}')]
    fake_provider.queue(provider.tool_calls(calls, usage=(30, 12)))
    pieces = [(0.0, cid, name, [(0.0, args[:5]), (0.0, args[5:])]) for cid, name, args in calls]
    fake_provider.queue(streamed(pieces_for(provider.name, [], pieces, usage=(30, 12))))
    model = provider.model(fake_provider)
    async with model.client:
        plain = await model(ask())
        events = await read(model, ask())
    last = events[-1][1]
    assert isinstance(last, ModelFinished)
    assert last.outcome == plain


@pytest.mark.real_clock
async def test_a_connection_cut_mid_stream_is_provider_unavailable(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    pieces = pieces_for(provider.name, [(0.0, "half")], [])[:2]
    fake_provider.queue(streamed(pieces, cut=True))
    model = provider.model(fake_provider)
    async with model.client:
        with pytest.raises(ProviderUnavailable, match="connection failed") as caught:
            await read(model, ask())
    assert caught.value.retryable


# -- timing, in virtual time ---------------------------------------------------------------------


def timed_calls() -> list[tuple[float, str, str, list[tuple[float, str]]]]:
    """Five calls; the k-th call's arguments end at t = k s (tool 1 works 4 s, the others 1)."""
    return [
        (0.0, f"c{k}", "work", [(1.0, json.dumps({"key": f"c{k}", "seconds": 4 if k == 1 else 1}))])
        for k in range(1, 6)
    ]


async def test_each_call_is_complete_the_moment_its_arguments_are(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(streamed(pieces_for(provider.name, [], timed_calls())))
    events = await read(provider.model(in_process), ask())
    complete = [(at, e.call.id) for at, e in events if isinstance(e, ToolCallComplete)]
    assert complete == [(k, f"c{k}") for k in range(1, 6)]
    started = [(at, e.id) for at, e in events if isinstance(e, ToolCallStarted)]
    assert started == [(k - 1, f"c{k}") for k in range(1, 6)]
    assert events[-1][0] == 5


started_at: dict[str, float] = {}


@tool
async def work(key: str, seconds: float) -> str:
    """Works for a while."""
    started_at[key] = anyio.current_time()
    await anyio.sleep(seconds)
    return f"{key} done"


@tool
async def broken(key: str, seconds: float) -> str:
    """Fails after a while."""
    await anyio.sleep(seconds)
    raise ValueError(f"{key} broke")


@pytest.fixture(autouse=True)
def _reset() -> None:
    started_at.clear()


async def test_an_agent_over_the_sdk_starts_each_tool_as_its_call_completes(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(streamed(pieces_for(provider.name, [], timed_calls())))
    in_process.queue(streamed(pieces_for(provider.name, [(0.0, "all done")], [])))
    agent = Agent(provider.model(in_process), tools=ToolRouter([work]))
    last_result = 0.0
    async with agent.run_stream("go") as events:
        async for event in events:
            if isinstance(event, ToolFinished):
                last_result = anyio.current_time()
            if isinstance(event, RunFinished):
                assert event.result.output == "all done"
    assert last_result == 6
    assert started_at == {f"c{k}": k for k in range(1, 6)}
    sent = in_process.requests[1].body["messages"]
    if provider.name == "openai":
        ids = [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    else:
        blocks = [b for m in sent if isinstance(m["content"], list) for b in m["content"]]
        ids = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
    assert ids == ["c1", "c2", "c3", "c4", "c5"]  # in call order, though c2 finished first


async def test_the_same_agent_without_streaming_is_done_at_nine_seconds(
    provider: Kit, in_process: InProcessProvider
) -> None:
    calls = [(cid, name, pieces[0][1]) for _, cid, name, pieces in timed_calls()]
    reply = provider.tool_calls(calls)
    in_process.queue(Reply(body=reply.body, delay=5.0), provider.text("all done"))
    result = await Agent(provider.model(in_process), tools=ToolRouter([work])).run("go")
    assert result.output == "all done"
    assert anyio.current_time() == 9
    assert set(started_at.values()) == {5}


async def test_fail_fast_closes_the_response_of_the_stream_it_cancels(
    provider: Kit, in_process: InProcessProvider
) -> None:
    calls = timed_calls()
    calls[1] = (0.0, "c2", "broken", [(1.0, json.dumps({"key": "c2", "seconds": 0.5}))])
    in_process.queue(streamed(pieces_for(provider.name, [], calls)))
    agent = Agent(
        provider.model(in_process), tools=ToolRouter([work, broken]), policy=JoinPolicy.FAIL_FAST
    )
    with pytest.raises(ValueError, match="c2 broke"):
        await _drain(agent)
    assert anyio.current_time() == 2.5
    assert in_process.closed_streams == 1  # the model's answer was cut off, its response closed


async def test_breaking_out_of_a_model_stream_closes_the_response(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(streamed(pieces_for(provider.name, [], timed_calls())))
    async with provider.model(in_process).stream(ask()) as events:
        async for event in events:
            if isinstance(event, ToolCallComplete):
                break
    assert in_process.closed_streams == 1
    assert anyio.current_time() == 1


# -- what a stream can carry --------------------------------------------------------------------


async def test_arguments_that_are_not_a_json_object_are_kept_raw(
    provider: Kit, in_process: InProcessProvider
) -> None:
    calls = [(0.0, "c1", "get_weather", [(0.0, '{"city": '), (0.0, "Oslo}")])]
    in_process.queue(streamed(pieces_for(provider.name, [], calls)))
    events = [e for _, e in await read(provider.model(in_process), ask())]
    complete = next(e for e in events if isinstance(e, ToolCallComplete))
    assert complete.call == ToolCall(
        id="c1", name="get_weather", arguments={}, raw_arguments='{"city": Oslo}'
    )
    last = events[-1]
    assert isinstance(last, ModelFinished)
    assert last.outcome.tool_calls[0].raw_arguments == '{"city": Oslo}'


async def test_a_call_cut_short_by_max_tokens_is_kept_raw(in_process: InProcessProvider) -> None:
    from .provider_kit import ANTHROPIC

    calls = [
        (0.0, "t1", "get_weather", [(0.0, '{"city": "Oslo"}')]),
        (0.0, "t2", "get_weather", [(0.0, '{"city": "Li"}')]),  # complete JSON, cut all the same
    ]
    in_process.queue(streamed(anthropic_pieces([], calls, stop_reason="max_tokens")))
    events = [e for _, e in await read(ANTHROPIC.model(in_process), ask())]
    complete = [e.call for e in events if isinstance(e, ToolCallComplete)]
    assert complete[0].raw_arguments is None
    assert complete[1] == ToolCall(
        id="t2", name="get_weather", arguments={}, raw_arguments='{"city": "Li"}'
    )
    plain = [(cid, name, json.loads(p[0][1])) for _, cid, name, p in calls]
    in_process.queue(Reply(body=anthropic_message(None, plain, stop_reason="max_tokens")))
    last = events[-1]
    assert isinstance(last, ModelFinished)
    assert last.outcome == await ANTHROPIC.model(in_process)(ask())


async def test_an_error_event_mid_stream_is_a_provider_error(
    provider: Kit, in_process: InProcessProvider
) -> None:
    pieces = pieces_for(provider.name, [(0.0, "half")], [])[:3]
    if provider.name == "openai":
        error: dict[str, Any] = {"error": {"message": "server broke", "type": "server_error"}}
        pieces.append((1.0, b"data: " + json.dumps(error).encode() + b"\n\n"))
    else:
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        pieces.append((1.0, b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"))
    in_process.queue(streamed(pieces))
    seen: list[tuple[float, StepEvent]] = []
    with pytest.raises(ProviderError) as caught:
        await read(provider.model(in_process), ask(), seen)
    assert [event for _, event in seen] == [TextDelta(text="half")]
    assert caught.value.retryable
    if provider.name == "anthropic":
        assert isinstance(caught.value, ProviderUnavailable)
        assert "Overloaded" in str(caught.value)
    else:
        assert "server broke" in str(caught.value)


async def test_a_refused_stream_raises_before_any_event(
    provider: Kit, in_process: InProcessProvider
) -> None:
    error = provider.error("slow down", "rate_limit_error")
    in_process.queue(Reply(429, error, {"retry-after": "7"}))
    with pytest.raises(RateLimited) as caught:
        await read(provider.model(in_process), ask())
    assert caught.value.retry_after == 7


async def test_a_cut_inside_the_transport_is_provider_unavailable(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(streamed(pieces_for(provider.name, [(1.0, "half")], [])[:2], cut=True))
    with pytest.raises(ProviderUnavailable, match="connection failed"):
        await read(provider.model(in_process), ask())


async def test_an_openai_call_that_goes_on_after_the_next_began_fails_the_stream(
    in_process: InProcessProvider,
) -> None:
    from .provider_kit import OPENAI

    pieces = openai_pieces([], [(0.0, "a", "f", [(0.0, "{")]), (0.0, "b", "f", [(0.0, "{}")])])
    late = {"index": 0, "function": {"arguments": "}"}}
    chunk = json.loads(pieces[-4][1][len(b"data: ") :])
    chunk["choices"][0]["delta"] = {"tool_calls": [late]}
    pieces.insert(-3, (0.0, b"data: " + json.dumps(chunk).encode() + b"\n\n"))
    in_process.queue(streamed(pieces))
    with pytest.raises(ProviderError, match="went on after a later tool call began") as caught:
        await read(OPENAI.model(in_process), ask())
    assert not caught.value.retryable


async def test_stream_options_can_be_set_through_params(in_process: InProcessProvider) -> None:
    from .provider_kit import OPENAI

    in_process.queue(streamed(openai_pieces([(0.0, "hi")], [])))
    model = OPENAI.model(in_process, params={"stream_options": {"include_usage": False}})
    await read(model, ask())
    assert in_process.requests[0].body["stream_options"] == {"include_usage": False}


async def test_an_openai_stream_without_usage_has_none(in_process: InProcessProvider) -> None:
    from .provider_kit import OPENAI

    pieces = [p for p in openai_pieces([(0.0, "hi")], []) if b'"usage"' not in p[1]]
    in_process.queue(streamed(pieces))
    last = (await read(OPENAI.model(in_process), ask()))[-1][1]
    assert isinstance(last, ModelFinished)
    assert last.outcome.usage is None
    assert last.outcome.done
    assert last.outcome.messages[-1] == Message.assistant("hi")


async def test_an_empty_openai_stream_is_a_provider_error(in_process: InProcessProvider) -> None:
    from .provider_kit import OPENAI

    in_process.queue(streamed([(0.0, b"data: [DONE]\n\n")]))
    with pytest.raises(ProviderError, match="no choices in the stream"):
        await read(OPENAI.model(in_process), ask())


def test_a_conversation_that_cannot_be_sent_fails_when_the_stream_is_made(
    in_process: InProcessProvider,
) -> None:
    bad = ChatRequest(messages=[Message(role="tool", content="x")])
    for kit in KITS:
        with pytest.raises(ValueError, match="without tool_call_id"):
            kit.model(in_process).stream(bad)
