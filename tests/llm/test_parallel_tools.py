"""ParallelToolsLayer: the tools a model answer asks for run in parallel, results appended."""

from __future__ import annotations

import anyio
import pytest

from towerpy import ServiceBuilder
from towerpy.llm import ChatRequest, Message, ParallelToolsLayer, ScriptedModel, ToolCall
from towerpy.tools import JoinPolicy, ToolRouter, tool

pytestmark = pytest.mark.anyio


@tool
async def slow_upper(text: str, delay: float) -> str:
    """Upper-cases text after a delay."""
    await anyio.sleep(delay)
    return text.upper()


class Broken(Exception):
    pass


@tool
async def broken() -> str:
    """Always fails."""
    raise Broken("disk on fire")


def calls(*specs: tuple[str, str, dict[str, object]]) -> Message:
    return Message.assistant(
        tool_calls=[ToolCall(id=i, name=name, arguments=args) for i, name, args in specs]
    )


async def test_tool_results_are_appended_in_call_order_and_the_outcome_is_not_done() -> None:
    model = ScriptedModel(
        [
            calls(
                ("c1", "slow_upper", {"text": "a", "delay": 3}),
                ("c2", "slow_upper", {"text": "b", "delay": 1}),
                ("c3", "slow_upper", {"text": "c", "delay": 2}),
            )
        ]
    )
    step = ServiceBuilder().layer(ParallelToolsLayer(ToolRouter([slow_upper]))).service(model)
    outcome = await step(ChatRequest(messages=[Message.user("go")]))
    assert not outcome.done
    tool_messages = outcome.messages[2:]
    assert [(m.role, m.tool_call_id, m.name, m.content) for m in tool_messages] == [
        ("tool", "c1", "slow_upper", "A"),
        ("tool", "c2", "slow_upper", "B"),
        ("tool", "c3", "slow_upper", "C"),
    ]
    assert [c.id for c in outcome.tool_calls] == ["c1", "c2", "c3"]
    assert anyio.current_time() == 3  # in parallel, not 6


async def test_an_answer_without_tools_passes_through_unchanged() -> None:
    model = ScriptedModel([Message.assistant("hello")])
    step = ParallelToolsLayer(ToolRouter([slow_upper])).layer(model)
    outcome = await step(ChatRequest(messages=[Message.user("hi")]))
    assert outcome.done
    assert outcome.messages[-1] == Message.assistant("hello")


async def test_the_limit_bounds_the_tools_of_one_answer() -> None:
    model = ScriptedModel(
        [calls(*[(f"c{n}", "slow_upper", {"text": "x", "delay": 1}) for n in range(4)])]
    )
    step = ParallelToolsLayer(ToolRouter([slow_upper]), limit=2).layer(model)
    await step(ChatRequest(messages=[Message.user("go")]))
    assert anyio.current_time() == 2


async def test_failures_reach_the_model_as_error_messages_by_default() -> None:
    model = ScriptedModel(
        [
            calls(
                ("c1", "broken", {}),
                ("c2", "slow_upper", {"text": "late", "delay": 5}),
                ("c3", "nope", {}),
            )
        ]
    )
    step = ParallelToolsLayer(ToolRouter([slow_upper, broken]), tool_timeout=1).layer(model)
    outcome = await step(ChatRequest(messages=[Message.user("go")]))
    errors = [(m.is_error, m.content) for m in outcome.messages[2:]]
    assert errors == [
        (True, "tool 'broken' failed: Broken: disk on fire"),
        (True, "tool 'slow_upper' timed out after 1 seconds"),
        (True, "no tool named 'nope'; known tools: 'slow_upper', 'broken'"),
    ]


async def test_malformed_arguments_reach_the_model_as_an_error_message() -> None:
    bad = ToolCall(id="c1", name="slow_upper", raw_arguments='{"text": ')
    step = ParallelToolsLayer(ToolRouter([slow_upper])).layer(
        ScriptedModel([Message.assistant(tool_calls=[bad])])
    )
    outcome = await step(ChatRequest(messages=[Message.user("go")]))
    reply = outcome.messages[-1]
    assert reply.is_error
    assert reply.content is not None
    assert reply.content.startswith("arguments for tool 'slow_upper' are not a JSON object")
    assert outcome.messages[1].tool_calls[0].raw_arguments == '{"text": '  # kept verbatim


async def test_under_join_all_a_tool_failure_propagates() -> None:
    step = ParallelToolsLayer(ToolRouter([broken]), policy=JoinPolicy.JOIN_ALL).layer(
        ScriptedModel([calls(("c1", "broken", {}))])
    )
    with pytest.raises(Broken):
        await step(ChatRequest(messages=[Message.user("go")]))


async def test_a_request_without_specs_gets_the_routers_specs() -> None:
    model = ScriptedModel([Message.assistant("ok"), Message.assistant("ok")])
    router = ToolRouter([slow_upper])
    step = ParallelToolsLayer(router).layer(model)
    await step(ChatRequest(messages=[Message.user("a")]))
    assert model.requests[0].tools == [slow_upper.spec]
    await step(ChatRequest(messages=[Message.user("b")], tools=[broken.spec]))
    assert model.requests[1].tools == [broken.spec]  # the caller's choice stands
    assert ParallelToolsLayer(router).specs == [slow_upper.spec]


def test_bad_options_are_refused_when_the_layer_is_made() -> None:
    with pytest.raises(ValueError, match="limit"):
        ParallelToolsLayer(ToolRouter(), limit=0)
    with pytest.raises(TypeError, match="JoinPolicy"):
        ParallelToolsLayer(ToolRouter(), policy="isolate")  # type: ignore[arg-type]


async def test_a_router_wrapped_in_layers_gives_its_specs_through_the_catalog() -> None:
    from towerpy import ConcurrencyLimitLayer

    model = ScriptedModel([Message.assistant("ok"), Message.assistant("ok")])
    router = ToolRouter([slow_upper])
    wrapped = ConcurrencyLimitLayer(2).layer(router)
    await ParallelToolsLayer(wrapped, catalog=router).layer(model)(
        ChatRequest(messages=[Message.user("a")])
    )
    assert model.requests[0].tools == [slow_upper.spec]
    await ParallelToolsLayer(wrapped).layer(model)(ChatRequest(messages=[Message.user("b")]))
    assert model.requests[1].tools == []  # a plain service tells no specs: nothing is guessed
    assert ParallelToolsLayer(wrapped).specs == []
