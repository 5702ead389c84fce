"""The built-in spans: a two-agent run with parallel tools, as the GenAI conventions name it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from typing_extensions import override

from towerpy import Middleware, Service, ServiceBuilder, otel
from towerpy.llm import Agent, ChatRequest, Message, ScriptedModel, StepOutcome, ToolCall
from towerpy.tools import ToolRouter, tool

from .conftest import attrs

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from .conftest import Telemetry

pytestmark = pytest.mark.anyio


class Named(Middleware[ChatRequest, StepOutcome], direct_call=True):
    """A step service with a model name, as the provider adapters have."""

    __slots__ = ("model", "outcomes")

    def __init__(self, inner: Service[ChatRequest, StepOutcome], model: str) -> None:
        super().__init__(inner)
        self.model = model
        self.outcomes: list[StepOutcome] = []

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        outcome = await self.inner(request)
        self.outcomes.append(outcome)
        return outcome


def ask(*calls: tuple[str, str, dict[str, Any]]) -> Message:
    return Message.assistant(
        tool_calls=[ToolCall(id=i, name=name, arguments=args) for i, name, args in calls]
    )


def build() -> Agent:
    """An orchestrator whose tools include a researcher agent, a failing one and one that
    outlives the batch's tool_timeout (sync tools in threads: tests/otel/test_context.py)."""

    @tool
    async def lookup(term: str) -> str:
        """Looks a term up."""
        await anyio.sleep(1)
        return f"{term}: found"

    researcher = Agent(
        Named(
            ScriptedModel(
                [ask(("l1", "lookup", {"term": "tower"})), Message.assistant("tower is a crate")]
            ),
            "scout-1",
        ),
        tools=ToolRouter([lookup]),
    )

    @tool
    async def research(topic: str) -> str:
        """Asks the researcher agent."""
        return (await researcher.run(topic)).output

    @tool
    async def weather(city: str) -> str:
        """Gets the weather of a city."""
        await anyio.sleep(2)
        return f"{city}: sunny"

    @tool
    async def broken() -> str:
        """Always fails."""
        raise ValueError("boom")

    @tool
    async def stall() -> str:
        """Never answers in time."""
        await anyio.sleep(60)
        return "late"

    planner = Named(
        ScriptedModel(
            [
                ask(
                    ("r1", "research", {"topic": "tower"}),
                    ("w1", "weather", {"city": "Oslo"}),
                    ("b1", "broken", {}),
                    ("s1", "stall", {}),
                ),
                Message.assistant("done"),
            ]
        ),
        "planner-1",
    )
    tools = ToolRouter([research, weather, broken, stall])
    return Agent(planner, tools=tools, tool_timeout=5)


def tree(spans: list[ReadableSpan]) -> list[str]:
    """The spans as an indented outline, children sorted (backends order them differently)."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent if parent in ids else None, []).append(span)

    def label(span: ReadableSpan) -> str:
        call = attrs(span).get("gen_ai.tool.call.id")
        status = span.status.status_code
        return (
            span.name
            + (f" #{call}" if call else "")
            + (" ERROR" if status is StatusCode.ERROR else "")
        )

    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=label):
            lines.append("  " * depth + label(span))
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


async def test_a_two_agent_run_with_parallel_tools_is_one_tree_of_genai_spans(
    telemetry: Telemetry,
) -> None:
    agent = build()
    result = await agent.run("plan the trip")
    assert result.output == "done"
    assert tree(telemetry.finished()) == [
        "invoke_agent",
        "  chat planner-1",
        "  chat planner-1",
        "  execute_tool broken #b1 ERROR",
        "  execute_tool research #r1",
        "    invoke_agent",
        "      chat scout-1",
        "      chat scout-1",
        "      execute_tool lookup #l1",
        "  execute_tool stall #s1 ERROR",
        "  execute_tool weather #w1",
    ]
    assert anyio.current_time() == 5.0  # the batch waited for stall's tool_timeout, no longer


async def test_spans_carry_the_genai_attributes(telemetry: Telemetry) -> None:
    agent = build()
    result = await agent.run("plan the trip")
    root = next(s for s in telemetry.named("invoke_agent") if s.parent is None)
    assert root.kind is SpanKind.INTERNAL
    assert attrs(root) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "towerpy.scripted",
        "gen_ai.request.model": "planner-1",
        "gen_ai.usage.input_tokens": result.usage.input_tokens if result.usage else None,
        "gen_ai.usage.output_tokens": result.usage.output_tokens if result.usage else None,
        "towerpy.agent.steps": 2,
    }
    chats = [s for s in telemetry.named("chat planner-1") if s.parent == root.context]
    assert [s.kind for s in chats] == [SpanKind.CLIENT, SpanKind.CLIENT]
    assert isinstance(agent.step, Named)
    for span, outcome in zip(
        sorted(chats, key=lambda s: s.start_time or 0), agent.step.outcomes, strict=True
    ):
        assert outcome.usage is not None
        assert attrs(span) == {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "towerpy.scripted",
            "gen_ai.request.model": "planner-1",
            "gen_ai.usage.input_tokens": outcome.usage.input_tokens,
            "gen_ai.usage.output_tokens": outcome.usage.output_tokens,
            "gen_ai.response.finish_reasons": (outcome.finish_reason,),
        }
    assert [o.finish_reason for o in agent.step.outcomes] == ["tool_calls", "stop"]
    (weather,) = telemetry.named("execute_tool weather")
    assert weather.kind is SpanKind.INTERNAL
    assert attrs(weather) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "weather",
        "gen_ai.tool.call.id": "w1",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Gets the weather of a city.",
    }
    assert weather.status.status_code is StatusCode.UNSET
    assert (weather.end_time or 0) - (weather.start_time or 0) > 0


async def test_a_failed_and_a_timed_out_tool_end_their_spans_with_an_error(
    telemetry: Telemetry,
) -> None:
    await build().run("plan the trip")
    (broken,) = telemetry.named("execute_tool broken")
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.status.description == "boom"
    assert attrs(broken)["error.type"] == "ValueError"
    (stall,) = telemetry.named("execute_tool stall")
    assert stall.status.status_code is StatusCode.ERROR
    assert attrs(stall)["error.type"] == "towerpy.errors.Elapsed"
    assert (stall.end_time or 0) - (stall.start_time or 0) > 0
    # the run itself went on: under ISOLATE the model read both errors
    root = next(s for s in telemetry.named("invoke_agent") if s.parent is None)
    assert root.status.status_code is StatusCode.UNSET


async def test_a_tool_whose_own_timeout_passes_raises_elapsed_through_its_span(
    telemetry: Telemetry,
) -> None:
    @tool(timeout=2)
    async def fetch(url: str) -> str:
        """Fetches a page."""
        await anyio.sleep(10)
        return url

    agent = Agent(
        ScriptedModel([ask(("f1", "fetch", {"url": "x"})), Message.assistant("ok")]),
        tools=ToolRouter([fetch]),
    )
    await agent.run("go")
    (span,) = telemetry.named("execute_tool fetch")
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "towerpy.errors.Elapsed"
    assert span.status.description == "request timed out after 2.0s"


async def test_a_failed_run_ends_its_span_with_the_error(telemetry: Telemetry) -> None:
    agent = Agent(ScriptedModel([ask(("x", "missing", {}))]), tools=ToolRouter(), max_steps=1)
    with pytest.raises(Exception, match="max_steps=1"):
        await agent.run("go")
    (run,) = telemetry.named("invoke_agent")
    assert run.status.status_code is StatusCode.ERROR
    assert attrs(run)["error.type"] == "towerpy.errors.MaxStepsExceeded"
    (chat,) = telemetry.named("chat")  # no model name anywhere: the span is just "chat"
    assert "gen_ai.request.model" not in attrs(chat)


async def test_a_model_call_that_fails_is_a_chat_span_with_its_error_type(
    telemetry: Telemetry,
) -> None:
    from towerpy.errors import RateLimited

    def refuse(request: ChatRequest) -> Message:
        raise RateLimited("slow down", status_code=429, retry_after=1.0)

    agent = Agent(Named(ScriptedModel([refuse]), "gpt-x"))
    with pytest.raises(RateLimited):
        await agent.run("go")
    (chat,) = telemetry.named("chat gpt-x")
    assert chat.status.status_code is StatusCode.ERROR
    assert attrs(chat)["error.type"] == "towerpy.errors.RateLimited"
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "towerpy.scripted",
        "gen_ai.request.model": "gpt-x",
        "error.type": "towerpy.errors.RateLimited",
    }


async def test_an_agent_with_a_name_names_its_span(telemetry: Telemetry) -> None:
    # Agent has no name yet (named agents come with agent pools): the rule, on one that has
    from towerpy.otel._instrument import _telemetry

    class Researcher:
        name = "researcher"
        step = Named(ScriptedModel([]), "scout-1")

    assert _telemetry is not None

    async def proceed() -> str:
        return "ran"

    assert await _telemetry.agent_run(Researcher(), "topic", proceed) == "ran"
    (span,) = telemetry.named("invoke_agent researcher")
    assert attrs(span)["gen_ai.agent.name"] == "researcher"


async def test_uninstrumented_nothing_is_recorded(telemetry: Telemetry) -> None:
    otel.uninstrument()
    assert not otel.instrumented()
    await build().run("plan the trip")
    assert telemetry.finished() == []


async def test_builder_stacks_under_an_agent_are_read_for_the_model_name(
    telemetry: Telemetry,
) -> None:
    step = (
        ServiceBuilder()
        .concurrency_limit(2)
        .rate_limit(10)
        .service(Named(ScriptedModel([Message.assistant("hi")]), "deep-model"))
    )
    await Agent(step).run("go")
    assert [s.name for s in telemetry.finished()] == ["chat deep-model", "invoke_agent"]


async def test_an_agent_asked_the_same_question_inside_another_run_has_its_own_span(
    telemetry: Telemetry,
) -> None:
    from towerpy import service_fn

    question = "what is tower?"
    inner = Agent(ScriptedModel([Message.assistant("a Rust crate")]))

    async def delegate(request: ChatRequest) -> StepOutcome:
        answer = await inner.run(question)  # the very object the outer run was given
        return StepOutcome(
            messages=[*request.messages, Message.assistant(answer.output)], done=True
        )

    result = await Agent(service_fn(delegate)).run(question)
    assert result.output == "a Rust crate"
    assert tree(telemetry.finished()) == [
        "invoke_agent",
        "  chat",
        "    invoke_agent",
        "      chat",
    ]
