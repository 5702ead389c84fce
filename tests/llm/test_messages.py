from __future__ import annotations

from towerpy.llm import ChatRequest, Message, StepOutcome, ToolCall, Usage
from towerpy.tools import ToolOutput, ToolSpec


def test_tool_call_becomes_an_invocation_with_its_raw_arguments() -> None:
    call = ToolCall(id="c1", name="f", arguments={}, raw_arguments='{"a": ')
    invocation = call.to_invocation()
    assert (invocation.id, invocation.name, invocation.arguments) == ("c1", "f", {})
    assert invocation.raw_arguments == '{"a": '


def test_tool_message_reports_an_output_and_its_error_flag() -> None:
    ok = Message.tool(ToolOutput(id="c1", name="f", content={"x": 1}))
    assert (ok.role, ok.content, ok.tool_call_id, ok.name, ok.is_error) == (
        "tool",
        '{"x": 1}',
        "c1",
        "f",
        False,
    )
    failed = Message.tool(ToolOutput(id="c2", name="g", content="g failed: boom", is_error=True))
    assert failed.is_error
    assert failed.content == "g failed: boom"


def test_constructors_and_defaults() -> None:
    assert Message.user("hi").model_dump(exclude_defaults=True) == {"role": "user", "content": "hi"}
    assistant = Message.assistant(tool_calls=[ToolCall(id="1", name="f", arguments={"a": 1})])
    assert assistant.content is None
    assert assistant.tool_calls[0].arguments == {"a": 1}
    request = ChatRequest(messages=[Message.system("s"), Message.user("u")])
    assert request.tools == []
    spec = ToolSpec(name="f", description="d", parameters={"type": "object"})
    assert ChatRequest(messages=[], tools=[spec]).tools[0].name == "f"


def test_usage_total_tokens() -> None:
    assert Usage(input_tokens=10, output_tokens=5).total_tokens == 15


def test_step_outcome_defaults() -> None:
    outcome = StepOutcome(messages=[Message.assistant("done")], done=True)
    assert outcome.tool_calls == []
    assert outcome.usage is None
