"""The real SDK clients over real sockets, against a local server speaking each protocol.

These run on the real clock (a virtual clock would jump past the SDK's timeouts while the
server thread works) and never sleep to synchronise: every wait is on a response.
"""

from __future__ import annotations

import anyio
import pytest

from towerpy.errors import ProviderError, ProviderUnavailable, RateLimited
from towerpy.llm import ChatRequest, Message, ToolCall, is_retryable
from towerpy.tools import ToolOutput

from .fake_provider import FakeProvider, Recorded, Reply
from .provider_kit import KITS, Kit

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.param
    return kit


async def test_one_step_over_http_with_strict_response_validation(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    fake_provider.queue(provider.text("hello there", usage=(21, 3)))
    model = provider.model(fake_provider)
    async with model.client:
        outcome = await model(ChatRequest(messages=[Message.user("hi")]))
    assert outcome.done
    assert outcome.messages[-1] == Message.assistant("hello there")
    assert outcome.usage is not None
    assert outcome.usage.total_tokens == 24
    (sent,) = fake_provider.requests
    assert sent.path == PATHS[provider.name]
    assert sent.headers["content-type"] == "application/json"
    assert provider.user_texts(sent) == ["hi"]


async def test_tool_calls_and_their_results_make_a_round_trip(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    fake_provider.queue(
        provider.tool_calls([("call_1", "add", '{"a": 1, "b": 2}'), ("call_2", "add", "{}")]),
        provider.text("3, and nothing"),
    )
    model = provider.model(fake_provider)
    async with model.client:
        first = await model(ChatRequest(messages=[Message.user("add")]))
        assert [(c.id, c.arguments) for c in first.tool_calls] == [
            ("call_1", {"a": 1, "b": 2}),
            ("call_2", {}),
        ]
        results = [
            Message.tool(ToolOutput(id="call_1", name="add", content=3)),
            Message.tool(ToolOutput(id="call_2", name="add", content="add failed", is_error=True)),
        ]
        second = await model(ChatRequest(messages=[*first.messages, *results]))
    assert second.done
    assert second.messages[-1].content == "3, and nothing"
    replayed = fake_provider.requests[1].body["messages"]
    if provider.name == "openai":
        assert [m["role"] for m in replayed] == ["user", "assistant", "tool", "tool"]
        assert replayed[1]["tool_calls"][0]["function"]["arguments"] == '{"a":1,"b":2}'
    else:
        assert [m["role"] for m in replayed] == ["user", "assistant", "user"]
        assert [b.get("is_error", False) for b in replayed[2]["content"]] == [False, True]


@pytest.mark.parametrize(
    ("status", "kind", "error_type", "retryable"),
    [
        (429, "rate_limit_error", RateLimited, True),
        (500, "api_error", ProviderUnavailable, True),
        (400, "invalid_request_error", ProviderError, False),
    ],
)
async def test_failures_map_to_provider_errors_with_one_request_even_on_a_retrying_client(
    provider: Kit,
    fake_provider: FakeProvider,
    status: int,
    kind: str,
    error_type: type[ProviderError],
    retryable: bool,
) -> None:
    headers = {"retry-after-ms": "250", provider.request_id_header: "req_1"}
    fake_provider.queue(Reply(status, provider.error("it failed", kind), headers))
    # the user's client would retry twice on its own; the adapter turns that off
    model = provider.model(fake_provider, client_options={"max_retries": 2})
    async with model.client:
        with pytest.raises(ProviderError) as raised:
            await model(ChatRequest(messages=[Message.user("hi")]))
    error = raised.value
    assert type(error) is error_type
    assert (error.status_code, error.retryable, is_retryable(error)) == (
        status,
        retryable,
        retryable,
    )
    assert error.retry_after == 0.25
    assert error.request_id == "req_1"
    assert isinstance(error.__cause__, provider.sdk.APIStatusError)
    assert len(fake_provider.requests) == 1


async def test_sdk_retries_kept_on_request_multiply_the_requests(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    failure = Reply(500, provider.error("down"), {"retry-after-ms": "1"})
    fake_provider.queue(failure, failure, failure)
    model = provider.model(fake_provider, client_options={"max_retries": 2}, sdk_max_retries=None)
    async with model.client:
        with pytest.raises(ProviderUnavailable):
            await model(ChatRequest(messages=[Message.user("hi")]))
    assert len(fake_provider.requests) == 3  # 1 try + the SDK's 2 retries


async def test_one_model_serves_many_concurrent_tasks(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    def echo(recorded: Recorded) -> Reply:
        return provider.text("echo " + provider.user_texts(recorded)[-1])

    fake_provider.queue(*[echo] * 20)
    model = provider.model(fake_provider)
    answers: dict[int, str | None] = {}

    async def ask(n: int) -> None:
        outcome = await model(ChatRequest(messages=[Message.user(f"n{n}")]))
        answers[n] = outcome.messages[-1].content

    async with model.client, anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(ask, n)
    assert answers == {n: f"echo n{n}" for n in range(20)}
    assert len(fake_provider.requests) == 20


async def test_a_call_cancelled_while_the_server_hangs_leaves_the_model_usable(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    fake_provider.queue(Reply(hang=True), provider.text("back"))
    model = provider.model(fake_provider)
    request = ChatRequest(messages=[Message.user("hi")])
    async with model.client:
        with anyio.move_on_after(0.2) as scope:
            await model(request)
        assert scope.cancelled_caught
        outcome = await model(request)
    assert outcome.messages[-1].content == "back"
    assert len(fake_provider.requests) == 2


async def test_a_conversation_from_another_provider_replays_with_valid_ids(
    fake_provider: FakeProvider,
) -> None:
    # Kimi-style ids, as an OpenAI-compatible server returns them, sent on to Anthropic
    kit = KITS[1]
    fake_provider.queue(kit.text("fine"))
    history = [
        Message.user("x"),
        Message.assistant(None, [ToolCall(id="functions.get:0", name="get", arguments={})]),
        Message.tool(ToolOutput(id="functions.get:0", name="get", content="v")),
    ]
    model = kit.model(fake_provider)
    async with model.client:
        outcome = await model(ChatRequest(messages=history))
    assert outcome.done
    sent = fake_provider.requests[0].body["messages"]
    assert sent[1]["content"][0]["id"] == sent[2]["content"][0]["tool_use_id"]


async def test_an_assertion_failing_inside_the_fake_server_reaches_the_test(
    provider: Kit,
) -> None:
    def wrong(recorded: Recorded) -> Reply:
        raise AssertionError("the model was sent the wrong thing")

    fake = FakeProvider().__enter__()
    fake.queue(wrong)
    model = provider.model(fake)
    async with model.client:
        with pytest.raises(ProviderUnavailable, match="the model was sent the wrong thing"):
            await model(ChatRequest(messages=[Message.user("hi")]))
    with pytest.raises(AssertionError, match="a reply function failed"):
        fake.__exit__(None, None, None)  # stopping the fake reports it too


async def test_a_lone_surrogate_in_tool_arguments_reaches_the_model_as_a_tool_error(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    from towerpy.tools import ParallelToolRouter, ToolRouter, tool

    @tool
    async def say(text: str) -> str:
        """Says a text."""
        return text

    # the body carries the escape \ud83d alone: the SDK decodes it to a lone surrogate
    fake_provider.queue(
        provider.tool_calls([("call_1", "say", '{"text": "\ud83d"}')]), provider.text("ok")
    )
    model = provider.model(fake_provider)
    async with model.client:
        first = await model(ChatRequest(messages=[Message.user("say it")]))
        [call] = first.tool_calls
        assert call.arguments == {}
        assert call.raw_arguments == '{"text": "\\ud83d"}'
        [output] = await ParallelToolRouter(ToolRouter([say]))(first.tool_calls)
        assert output.is_error
        assert "not valid Unicode" in output.content
        second = await model(ChatRequest(messages=[*first.messages, Message.tool(output)]))
    assert second.messages[-1].content == "ok"
    replayed = fake_provider.requests[1].body["messages"]
    if provider.name == "openai":
        assert replayed[1]["tool_calls"][0]["function"]["arguments"] == '{"text": "\\ud83d"}'
    else:
        assert replayed[1]["content"][0]["input"] == {}
