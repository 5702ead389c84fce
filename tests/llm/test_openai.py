"""OpenAIChatModel: conversion both ways, through the real SDK and an in-process transport."""

from __future__ import annotations

import json

import pytest

from towerpy.errors import ProviderError, RateLimited
from towerpy.llm import ChatRequest, Message, OpenAIChatModel, ToolCall, Usage
from towerpy.tools import ToolInvocation, ToolOutput, ToolSpec

from .fake_provider import InProcessProvider, Reply, openai_client
from .provider_kit import openai_completion, openai_error

pytestmark = pytest.mark.anyio

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def ask(text: str = "weather in Oslo?", tools: list[ToolSpec] | None = None) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)], tools=tools or [])


async def test_a_text_answer_is_done_and_ends_the_conversation(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=openai_completion("It is sunny.", usage=(12, 4))))
    request = ask()
    outcome = await OpenAIChatModel("gpt-test", client=openai_client(in_process))(request)
    assert outcome.done
    assert outcome.tool_calls == []
    assert outcome.messages == [*request.messages, Message.assistant("It is sunny.")]
    assert outcome.usage == Usage(input_tokens=12, output_tokens=4)
    assert outcome.finish_reason == "stop"
    (sent,) = in_process.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "weather in Oslo?"}],
    }


async def test_tool_calls_become_invocations_and_done_ignores_finish_reason(
    in_process: InProcessProvider,
) -> None:
    # gpt-4o and some compatible servers say "stop" alongside tool calls
    calls = [
        ("call_1", "get_weather", '{"city": "Oslo"}'),
        ("call_2", "get_weather", '{"city": "Rome"}'),
    ]
    in_process.queue(Reply(body=openai_completion(None, calls, finish_reason="stop")))
    outcome = await OpenAIChatModel("m", client=openai_client(in_process))(ask(tools=[WEATHER]))
    assert not outcome.done
    assert outcome.finish_reason == "stop"
    assert outcome.tool_calls == [
        ToolInvocation(id="call_1", name="get_weather", arguments={"city": "Oslo"}),
        ToolInvocation(id="call_2", name="get_weather", arguments={"city": "Rome"}),
    ]
    assert outcome.messages[-1] == Message.assistant(
        None,
        [
            ToolCall(id="call_1", name="get_weather", arguments={"city": "Oslo"}),
            ToolCall(id="call_2", name="get_weather", arguments={"city": "Rome"}),
        ],
    )
    assert in_process.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]


async def test_no_tool_calls_means_done_even_when_finish_reason_says_tool_calls(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=openai_completion("done", finish_reason="tool_calls")))
    outcome = await OpenAIChatModel("m", client=openai_client(in_process))(ask())
    assert outcome.done
    assert outcome.finish_reason == "tool_calls"


async def test_malformed_empty_and_idless_tool_calls_are_kept_not_dropped(
    in_process: InProcessProvider,
) -> None:
    calls = [
        ("call_a", "get_weather", '{"city": "Ro'),  # cut short
        ("call_b", "now", ""),  # OpenRouter's Anthropic models send "" for no arguments
        ("", "get_weather", '{"city": "Oslo"}'),  # a compatible server without ids
        ("", "get_weather", '["Oslo"]'),
    ]
    in_process.queue(Reply(body=openai_completion(None, calls, finish_reason="length")))
    outcome = await OpenAIChatModel("m", client=openai_client(in_process))(ask())
    first, second, third, fourth = outcome.tool_calls
    assert (first.arguments, first.raw_arguments) == ({}, '{"city": "Ro')
    assert (second.arguments, second.raw_arguments) == ({}, None)
    assert (third.arguments, third.raw_arguments) == ({"city": "Oslo"}, None)
    assert (fourth.arguments, fourth.raw_arguments) == ({}, '["Oslo"]')
    assert third.id.startswith("call_")
    assert fourth.id.startswith("call_")
    assert third.id != fourth.id
    # the assistant message carries the same ids, so the results find their calls
    assert [c.id for c in outcome.messages[-1].tool_calls] == [i.id for i in outcome.tool_calls]
    assert not outcome.done


async def test_a_refusal_is_the_content_and_the_finish_reason(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=openai_completion(None, refusal="I can't help with that.")))
    outcome = await OpenAIChatModel("m", client=openai_client(in_process))(ask())
    assert outcome.done
    assert outcome.finish_reason == "refusal"
    assert outcome.messages[-1].content == "I can't help with that."


async def test_usage_reads_cached_tokens_and_is_none_when_absent(
    in_process: InProcessProvider,
) -> None:
    body = openai_completion("hi", usage=(100, 7))
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 64}
    in_process.queue(Reply(body=body), Reply(body=openai_completion("hi", usage=None)))
    model = OpenAIChatModel("m", client=openai_client(in_process))
    first = await model(ask())
    assert first.usage == Usage(input_tokens=100, output_tokens=7, cache_read_tokens=64)
    assert first.usage.total_tokens == 107
    second = await model(ask())
    assert second.usage is None


async def test_the_conversation_goes_out_in_chat_completions_shape(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=openai_completion("ok")))
    history = [
        Message.system("Be brief."),
        Message.user("weather?"),
        Message.assistant(
            "Checking.",
            [
                ToolCall(id="c1", name="get_weather", arguments={"city": "Oslo"}),
                ToolCall(id="c2", name="get_weather", raw_arguments='{"city": "Ro'),
            ],
        ),
        Message.tool(ToolOutput(id="c1", name="get_weather", content={"temp": 21})),
        Message.tool(
            ToolOutput(
                id="c2",
                name="get_weather",
                content="get_weather: arguments are not a JSON object",
                is_error=True,
            )
        ),
        Message.assistant("Oslo is 21."),
        Message.user(""),
    ]
    await OpenAIChatModel("m", client=openai_client(in_process))(ChatRequest(messages=history))
    assert in_process.requests[0].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                # the model's own text goes back verbatim
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Ro'},
                },
            ],
        },
        # one tool message per result, never with "name" (Groq rejects it)
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"temp": 21})},
        {
            "role": "tool",
            "tool_call_id": "c2",
            "content": "Error: get_weather: arguments are not a JSON object",
        },
        {"role": "assistant", "content": "Oslo is 21."},
        {"role": "user", "content": ""},
    ]


async def test_an_assistant_message_with_only_tool_calls_sends_null_content(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=openai_completion("ok")))
    history = [
        Message.user("go"),
        Message.assistant(None, [ToolCall(id="c1", name="now", arguments={})]),
        Message.tool(ToolOutput(id="c1", name="now", content="12:00")),
    ]
    await OpenAIChatModel("m", client=openai_client(in_process))(ChatRequest(messages=history))
    sent = in_process.requests[0].body["messages"][1]
    assert sent["content"] is None
    assert sent["tool_calls"][0]["function"] == {"name": "now", "arguments": "{}"}


async def test_a_tool_message_without_its_call_id_is_refused_before_any_request(
    in_process: InProcessProvider,
) -> None:
    request = ChatRequest(messages=[Message.user("x"), Message(role="tool", content="12:00")])
    with pytest.raises(ValueError, match=r"messages\[1\] is a tool message without tool_call_id"):
        await OpenAIChatModel("m", client=openai_client(in_process))(request)
    assert in_process.requests == []


async def test_an_http_200_carrying_an_error_is_an_error_not_an_empty_answer(
    in_process: InProcessProvider,
) -> None:
    # OpenRouter reports failures after the answer started as 200 + {"error": ...}
    in_process.queue(
        Reply(body={"error": {"code": 429, "message": "Provider returned error"}}),
        Reply(body={"error": {"message": "upstream died"}}, headers={"x-request-id": "req_9"}),
        Reply(body={**openai_completion("x"), "choices": []}),
    )
    model = OpenAIChatModel("m", client=openai_client(in_process, strict=False))
    with pytest.raises(RateLimited) as limited:
        await model(ask())
    assert limited.value.status_code == 200
    assert limited.value.retryable
    assert "Provider returned error" in str(limited.value)
    with pytest.raises(ProviderError) as failed:
        await model(ask())
    assert failed.value.retryable
    assert failed.value.body == {"message": "upstream died"}
    assert "upstream died" in str(failed.value)
    with pytest.raises(ProviderError, match="no choices") as empty:
        await model(ask())
    assert empty.value.retryable


async def test_a_request_model_overrides_the_services_model(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=openai_completion("x")))
    request = ask().model_copy(update={"model": "gpt-other"})
    await OpenAIChatModel("gpt-test", client=openai_client(in_process))(request)
    assert in_process.requests[0].body["model"] == "gpt-other"


async def test_an_error_body_from_the_sdk_is_kept_on_the_exception(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(400, openai_error("bad schema", "invalid_request_error")))
    with pytest.raises(ProviderError) as raised:
        await OpenAIChatModel("m", client=openai_client(in_process))(ask())
    assert raised.value.body == {
        "message": "bad schema",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_an_answer_a_lax_server_garbled_is_a_provider_error_not_a_crash(
    in_process: InProcessProvider,
) -> None:
    body = openai_completion(None, [("call_1", "f", "{}")])
    body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = None
    in_process.queue(Reply(body=body, headers={"x-request-id": "req_3"}))
    model = OpenAIChatModel("m", client=openai_client(in_process, strict=False))
    with pytest.raises(ProviderError, match="the answer could not be read") as raised:
        await model(ask())
    assert (raised.value.status_code, raised.value.retryable) == (200, False)
    assert raised.value.request_id == "req_3"
    assert raised.value.__cause__ is not None
