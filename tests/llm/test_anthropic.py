"""AnthropicModel: conversion both ways, through the real SDK and an in-process transport."""

from __future__ import annotations

import re

import pytest

from towerpy.errors import ProviderError, ProviderUnavailable
from towerpy.llm import AnthropicModel, ChatRequest, Message, ToolCall, Usage
from towerpy.llm._anthropic_wire import wire_tool_id
from towerpy.tools import ToolInvocation, ToolOutput, ToolSpec

from .fake_provider import InProcessProvider, Reply, anthropic_client
from .provider_kit import anthropic_message

pytestmark = pytest.mark.anyio

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def ask(text: str = "weather in Oslo?", tools: list[ToolSpec] | None = None) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)], tools=tools or [])


def failed(call_id: str, text: str) -> Message:
    return Message.tool(ToolOutput(id=call_id, name="get_weather", content=text, is_error=True))


def ok(call_id: str, content: object) -> Message:
    return Message.tool(ToolOutput(id=call_id, name="get_weather", content=content))


async def test_a_text_answer_is_done_with_text_blocks_joined(
    in_process: InProcessProvider,
) -> None:
    body = anthropic_message("It is ")
    body["content"].append({"type": "text", "text": "sunny."})
    in_process.queue(Reply(body=body))
    request = ChatRequest(messages=[Message.system("Be brief."), Message.user("weather?")])
    outcome = await AnthropicModel("claude-test", client=anthropic_client(in_process))(request)
    assert outcome.done
    assert outcome.messages == [*request.messages, Message.assistant("It is sunny.")]
    assert outcome.usage == Usage(input_tokens=10, output_tokens=5)
    assert outcome.finish_reason == "end_turn"
    (sent,) = in_process.requests
    assert sent.path == "/v1/messages"
    assert sent.body == {
        "model": "claude-test",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather?"}]}],
        "max_tokens": 4096,
    }


async def test_tool_use_blocks_become_invocations_with_text_kept(
    in_process: InProcessProvider,
) -> None:
    uses = [("toolu_1", "get_weather", {"city": "Oslo"}), ("toolu_2", "get_weather", {})]
    in_process.queue(Reply(body=anthropic_message("Let me check.", uses)))
    model = AnthropicModel("m", client=anthropic_client(in_process), max_tokens=512)
    outcome = await model(ask(tools=[WEATHER]))
    assert not outcome.done
    assert outcome.finish_reason == "tool_use"
    assert outcome.tool_calls == [
        ToolInvocation(id="toolu_1", name="get_weather", arguments={"city": "Oslo"}),
        ToolInvocation(id="toolu_2", name="get_weather", arguments={}),
    ]
    assert outcome.messages[-1].content == "Let me check."
    sent = in_process.requests[0].body
    assert sent["max_tokens"] == 512
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]


async def test_done_ignores_the_stop_reason(in_process: InProcessProvider) -> None:
    in_process.queue(
        Reply(body=anthropic_message("no tools after all", stop_reason="tool_use")),
        Reply(body=anthropic_message(None, [("toolu_1", "f", {})], stop_reason="end_turn")),
    )
    model = AnthropicModel("m", client=anthropic_client(in_process))
    assert (await model(ask())).done
    assert not (await model(ask())).done


async def test_a_tool_call_cut_short_by_max_tokens_is_not_run_with_partial_input(
    in_process: InProcessProvider,
) -> None:
    uses = [
        ("toolu_1", "get_weather", {"city": "Oslo"}),
        ("toolu_2", "bash", {"cmd": "rm -rf /tm"}),
    ]
    in_process.queue(Reply(body=anthropic_message(None, uses, stop_reason="max_tokens")))
    outcome = await AnthropicModel("m", client=anthropic_client(in_process))(ask())
    first, last = outcome.tool_calls
    assert (first.arguments, first.raw_arguments) == ({"city": "Oslo"}, None)
    assert (last.arguments, last.raw_arguments) == ({}, '{"cmd": "rm -rf /tm"}')


async def test_usage_counts_cache_reads_and_writes_as_input(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=anthropic_message("hi", usage=(20, 8), cache=(300, 50))))
    outcome = await AnthropicModel("m", client=anthropic_client(in_process))(ask())
    assert outcome.usage == Usage(
        input_tokens=370, output_tokens=8, cache_read_tokens=300, cache_write_tokens=50
    )


async def test_one_batch_of_tool_results_travels_in_one_user_message_with_is_error(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=anthropic_message("ok")))
    history = [
        Message.system("You are terse."),
        Message.user("weather in three cities?"),
        Message.assistant(
            "Checking.",
            [
                ToolCall(id="toolu_a", name="get_weather", arguments={"city": "Oslo"}),
                ToolCall(id="toolu_b", name="get_weather", raw_arguments='{"city": "Ro'),
                ToolCall(id="toolu_c", name="get_weather", arguments={"city": "Lima"}),
            ],
        ),
        ok("toolu_a", {"temp": 21}),
        failed("toolu_b", "get_weather: arguments are not a JSON object"),
        ok("toolu_c", ""),
        Message.system("Answer in French."),
    ]
    await AnthropicModel("m", client=anthropic_client(in_process))(ChatRequest(messages=history))
    sent = in_process.requests[0].body
    assert sent["system"] == "You are terse.\n\nAnswer in French."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in three cities?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                # invalid arguments cannot travel as text: the input is an empty object
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}},
                {
                    "type": "tool_use",
                    "id": "toolu_c",
                    "name": "get_weather",
                    "input": {"city": "Lima"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": '{"temp": 21}'},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_b",
                    "content": "get_weather: arguments are not a JSON object",
                    "is_error": True,
                },
                {"type": "tool_result", "tool_use_id": "toolu_c"},  # empty content left out
            ],
        },
    ]


async def test_consecutive_turns_merge_and_tool_results_come_before_user_text(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=anthropic_message("ok")))
    history = [
        Message.user("first"),
        Message.user("   "),  # whitespace-only text is rejected by the API, and says nothing
        Message.user("second"),
        Message.assistant(None, [ToolCall(id="toolu_1", name="now", arguments={})]),
        Message.user("hurry"),
        ok("toolu_1", "12:00"),
        Message.assistant("It is noon."),
        Message.assistant("Anything else?"),
    ]
    await AnthropicModel("m", client=anthropic_client(in_process))(ChatRequest(messages=history))
    assert in_process.requests[0].body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12:00"},
                {"type": "text", "text": "hurry"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "It is noon."},
                {"type": "text", "text": "Anything else?"},
            ],
        },
    ]


async def test_foreign_tool_ids_are_rewritten_the_same_way_on_use_and_result(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body=anthropic_message("ok")))
    history = [
        Message.user("x"),
        Message.assistant(
            None,
            [
                ToolCall(id="functions.get:0", name="get", arguments={}),
                ToolCall(id="functions.get_0", name="get", arguments={}),
            ],
        ),
        ok("functions.get:0", "a"),
        ok("functions.get_0", "b"),
    ]
    await AnthropicModel("m", client=anthropic_client(in_process))(ChatRequest(messages=history))
    assistant, results = in_process.requests[0].body["messages"][1:]
    use_ids = [block["id"] for block in assistant["content"]]
    result_ids = [block["tool_use_id"] for block in results["content"]]
    assert use_ids == result_ids
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", tool_id) for tool_id in use_ids)
    assert use_ids[1] == "functions.get_0".replace(".", "_") + use_ids[1][len("functions_get_0") :]
    assert use_ids[0] != use_ids[1]  # no collision after rewriting


def test_valid_tool_ids_are_kept_and_invalid_ones_rewritten_deterministically() -> None:
    assert wire_tool_id("toolu_01A-b") == "toolu_01A-b"
    assert wire_tool_id("call:1") == wire_tool_id("call:1")
    assert wire_tool_id("call:1").startswith("call_1_")
    assert wire_tool_id("call:1") != wire_tool_id("call.1")
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", wire_tool_id(""))


async def test_a_tool_message_without_its_call_id_is_refused_before_any_request(
    in_process: InProcessProvider,
) -> None:
    request = ChatRequest(messages=[Message.user("x"), Message(role="tool", content="12:00")])
    with pytest.raises(ValueError, match=r"messages\[1\] is a tool message without tool_call_id"):
        await AnthropicModel("m", client=anthropic_client(in_process))(request)
    assert in_process.requests == []


async def test_an_http_200_carrying_an_error_is_an_error_not_an_empty_answer(
    in_process: InProcessProvider,
) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    in_process.queue(Reply(body=body, headers={"request-id": "req_7"}))
    model = AnthropicModel("m", client=anthropic_client(in_process, strict=False))
    with pytest.raises(ProviderUnavailable, match="Overloaded") as raised:
        await model(ask())
    assert raised.value.retryable
    assert raised.value.status_code == 200
    assert raised.value.request_id == "req_7"


async def test_a_response_that_breaks_the_schema_is_a_provider_error_under_strict_validation(
    in_process: InProcessProvider,
) -> None:
    in_process.queue(Reply(body={"type": "message", "content": "not a list"}))
    model = AnthropicModel("m", client=anthropic_client(in_process))
    with pytest.raises(ProviderError, match="does not match the API's schema") as raised:
        await model(ask())
    assert not raised.value.retryable
    assert type(raised.value) is ProviderError


async def test_an_answer_a_lax_server_garbled_is_a_provider_error_not_a_crash(
    in_process: InProcessProvider,
) -> None:
    body = anthropic_message("x")
    body["content"] = [{"type": "text", "text": None}]
    in_process.queue(Reply(body=body))
    model = AnthropicModel("m", client=anthropic_client(in_process, strict=False))
    with pytest.raises(ProviderError, match="the answer could not be read") as raised:
        await model(ask())
    assert not raised.value.retryable
