"""ScriptedModel: answers from a script, in call order, with a clear error past its end."""

from __future__ import annotations

import anyio
import pytest

from towerpy import ScriptExhausted, TowerError
from towerpy.llm import ChatRequest, Message, ScriptedModel, ToolCall
from towerpy.tools import ToolInvocation

pytestmark = pytest.mark.anyio


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)])


async def test_each_call_takes_the_next_entry() -> None:
    model = ScriptedModel(
        [
            Message.assistant(tool_calls=[ToolCall(id="c1", name="add", arguments={"a": 1})]),
            Message.assistant("done"),
        ]
    )
    first = await model(ask("hi"))
    assert first.tool_calls == [ToolInvocation(id="c1", name="add", arguments={"a": 1})]
    assert not first.done
    assert first.finish_reason == "tool_calls"
    assert first.messages[0] == Message.user("hi")
    assert first.messages[1].tool_calls[0].id == "c1"
    second = await model(ask("again"))
    assert second.done
    assert second.finish_reason == "stop"
    assert second.messages == [Message.user("again"), Message.assistant("done")]
    assert [r.messages[0].content for r in model.requests] == ["hi", "again"]
    assert model.remaining == 0


async def test_running_past_the_end_of_the_script_is_a_clear_error() -> None:
    model = ScriptedModel([Message.assistant("only answer")])
    await model(ask("one"))
    with pytest.raises(ScriptExhausted, match="called 2 times but its script has only 1 entries"):
        await model(ask("two"))
    assert issubclass(ScriptExhausted, TowerError)
    assert issubclass(ScriptExhausted, RuntimeError)


async def test_an_entry_can_be_a_function_of_the_request_sync_or_async() -> None:
    def echo(request: ChatRequest) -> Message:
        return Message.assistant(f"you said {request.messages[-1].content}")

    async def shout(request: ChatRequest) -> Message:
        await anyio.sleep(1)
        return Message.assistant(str(request.messages[-1].content).upper())

    model = ScriptedModel([echo, shout])
    assert (await model(ask("a"))).messages[-1].content == "you said a"
    assert (await model(ask("b"))).messages[-1].content == "B"
    assert anyio.current_time() == 1


async def test_a_function_that_returns_something_else_is_a_clear_error() -> None:
    model = ScriptedModel([lambda request: "plain text"])  # type: ignore[list-item, return-value]
    with pytest.raises(TypeError, match="must return an assistant Message"):
        await model(ask("a"))


async def test_latency_is_waited_in_virtual_time() -> None:
    model = ScriptedModel([Message.assistant("a"), Message.assistant("b")], latency=2.5)
    await model(ask("x"))
    assert anyio.current_time() == 2.5
    varying = ScriptedModel(
        [Message.assistant("a")], latency=lambda request: len(request.messages) * 1.0
    )
    await varying(ChatRequest(messages=[Message.user("1"), Message.user("2")]))
    assert anyio.current_time() == 4.5


async def test_concurrent_calls_take_entries_in_the_order_they_arrive() -> None:
    model = ScriptedModel([Message.assistant("first"), Message.assistant("second")], latency=1)
    answers: dict[str, str | None] = {}

    async def call(name: str) -> None:
        answers[name] = (await model(ask(name))).messages[-1].content

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "a")
        await anyio.sleep(0.5)
        tg.start_soon(call, "b")
    assert answers == {"a": "first", "b": "second"}


async def test_usage_is_estimated_at_four_characters_a_token() -> None:
    outcome = await ScriptedModel([Message.assistant("12345678")])(ask("1234"))
    assert outcome.usage is not None
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (1, 2)


def test_a_non_assistant_message_in_the_script_is_refused() -> None:
    with pytest.raises(ValueError, match="script entry 1 is a 'user' message"):
        ScriptedModel([Message.assistant("ok"), Message.user("oops")])
    with pytest.raises(TypeError, match="script entry 0 must be a Message"):
        ScriptedModel(["text"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="latency"):
        ScriptedModel([], latency=-1)
