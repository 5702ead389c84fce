"""Agent.run_stream: the run's events, tools started as their calls complete, and cancellation.

The scenario of the issue: a scripted stream whose k-th tool call completes at t = k s (k = 1..5),
tool 1 taking 4 s and the others 1 s each. With early start the batch is done at t = 6 s, without
it at t = 9 s. Everything runs in virtual time, on asyncio and trio.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any

import anyio
import pytest
from pydantic import TypeAdapter

from towerpy import ConcurrencyLimitLayer, MaxStepsExceeded, Service, ServiceBuilder
from towerpy.errors import InvalidToolArguments, ProviderError
from towerpy.llm import (
    Agent,
    AgentEvent,
    AgentStream,
    ChatRequest,
    Message,
    ModelFinished,
    ParallelToolsLayer,
    RunFinished,
    ScriptedModel,
    StepFinished,
    StepOutcome,
    StepStream,
    Streamed,
    TextDelta,
    ToolCall,
    ToolCallComplete,
    ToolCallStarted,
    ToolFinished,
    ToolStarted,
)
from towerpy.testing import InFlightProbe, wait_all_tasks_blocked
from towerpy.tools import JoinPolicy, ToolRouter, tool

pytestmark = pytest.mark.anyio

log: list[tuple[str, str, float]] = []  # (what, call id, when)


@tool
async def work(key: str, seconds: float) -> str:
    """Works for a while."""
    log.append(("start", key, anyio.current_time()))
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        log.append(("cancelled", key, anyio.current_time()))
        raise
    log.append(("end", key, anyio.current_time()))
    return f"{key} done"


@tool
async def broken(key: str, seconds: float) -> str:
    """Fails after a while."""
    log.append(("start", key, anyio.current_time()))
    await anyio.sleep(seconds)
    raise ValueError(f"{key} broke")


@tool(sequential=True)
async def alone(key: str, seconds: float) -> str:
    """Must run alone."""
    log.append(("start", key, anyio.current_time()))
    await anyio.sleep(seconds)
    log.append(("end", key, anyio.current_time()))
    return f"{key} done"


@pytest.fixture(autouse=True)
def _reset() -> None:
    log.clear()


def call(key: str, seconds: float, name: str = "work") -> ToolCall:
    return ToolCall(id=key, name=name, arguments={"key": key, "seconds": seconds})


def five_calls(name: str = "work") -> list[ToolCall]:
    """The issue's batch: tool 1 takes 4 s, the others 1 s."""
    return [call(f"c{k}", 4 if k == 1 else 1, name) for k in range(1, 6)]


def answer_in_order(request: ChatRequest) -> Message:
    tools = [m for m in request.messages if m.role == "tool"]
    return Message.assistant(" ".join(f"{m.tool_call_id}={m.content}" for m in tools))


def one_per_second(calls: list[ToolCall]) -> Streamed:
    """A streamed answer whose k-th call completes at t = k s."""
    return Streamed([(1.0, c) for c in calls])


def agent_for(*script: Any, **options: Any) -> Agent:
    tools = options.pop("tools", None) or ToolRouter([work, broken, alone])
    return Agent(ScriptedModel(list(script)), tools=tools, **options)


async def collect(
    stream: AgentStream, into: list[tuple[float, AgentEvent]] | None = None
) -> list[tuple[float, AgentEvent]]:
    """Every event with its time, gathered in ``into`` (kept when the run raises)."""
    events = [] if into is None else into
    async with stream as running:
        async for event in running:
            events.append((anyio.current_time(), event))
    return events


def times(events: list[tuple[float, AgentEvent]], kind: type[Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for at, event in events:
        if isinstance(event, ToolCallComplete) and kind is ToolCallComplete:
            found[event.call.id] = at
        elif isinstance(event, ToolStarted) and kind is ToolStarted:
            found[event.invocation.id] = at
        elif isinstance(event, ToolFinished) and kind is ToolFinished:
            found[event.output.id] = at
    return found


# -- the scenario -------------------------------------------------------------------------


async def test_with_early_start_the_batch_is_done_at_six_seconds() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    events = await collect(agent.run_stream("go"))
    finished = times(events, ToolFinished)
    assert finished == {"c1": 5, "c2": 3, "c3": 4, "c4": 5, "c5": 6}
    assert max(finished.values()) == 6
    result = events[-1][1]
    assert isinstance(result, RunFinished)
    assert result.result.output == "c1=c1 done c2=c2 done c3=c3 done c4=c4 done c5=c5 done"


async def test_without_early_start_the_batch_is_done_at_nine_seconds() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    events = await collect(agent.run_stream("go", early_start=False))
    finished = times(events, ToolFinished)
    assert finished == {"c1": 9, "c2": 6, "c3": 6, "c4": 6, "c5": 6}
    assert set(times(events, ToolStarted).values()) == {5}  # all at once, when the answer ends


async def test_run_without_streaming_is_done_at_nine_seconds_too() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    result = await agent.run("go")
    assert anyio.current_time() == 9
    assert result.output == "c1=c1 done c2=c2 done c3=c3 done c4=c4 done c5=c5 done"


async def test_every_tool_starts_at_the_instant_its_call_completes() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    events = await collect(agent.run_stream("go"))
    complete = times(events, ToolCallComplete)
    assert complete == {f"c{k}": k for k in range(1, 6)}
    assert times(events, ToolStarted) == complete
    started_running = {key: at for what, key, at in log if what == "start"}
    assert started_running == complete  # the tool's own code, not just the event


async def test_the_next_model_call_sees_the_results_in_call_order() -> None:
    model = ScriptedModel([one_per_second(five_calls()), answer_in_order])
    agent = Agent(model, tools=ToolRouter([work]))
    await collect(agent.run_stream("go"))
    second = model.requests[1]
    tools = [m for m in second.messages if m.role == "tool"]
    assert [m.tool_call_id for m in tools] == ["c1", "c2", "c3", "c4", "c5"]  # c2 finished first
    assert second.messages[-6].tool_calls == five_calls()


async def test_streamed_and_plain_runs_end_in_the_same_result() -> None:
    script = [one_per_second(five_calls()), answer_in_order]
    plain = await agent_for(*script).run("go")
    events = await collect(agent_for(*script).run_stream("go"))
    last = events[-1][1]
    assert isinstance(last, RunFinished)
    assert last.result == plain


# -- the events ---------------------------------------------------------------------------------


async def test_the_events_of_a_run_in_order() -> None:
    script = [
        Streamed([(0.5, "Let me "), (0.5, "check."), (1.0, call("c1", 1))]),
        Streamed([(0.5, "Done.")]),
    ]
    events = await collect(agent_for(*script).run_stream("go"))
    kinds = [(at, type(event).__name__) for at, event in events]
    assert kinds == [
        (0.5, "TextDelta"),
        (1.0, "TextDelta"),
        (1.0, "ToolCallStarted"),
        (2.0, "ToolCallComplete"),
        (2.0, "ToolStarted"),
        (2.0, "ModelFinished"),
        (3.0, "ToolFinished"),
        (3.0, "StepFinished"),
        (3.5, "TextDelta"),
        (3.5, "ModelFinished"),
        (3.5, "StepFinished"),
        (3.5, "RunFinished"),
    ]
    texts = [e.text for _, e in events if isinstance(e, TextDelta)]
    assert texts == ["Let me ", "check.", "Done."]
    first_step = events[7][1]
    assert isinstance(first_step, StepFinished)
    assert first_step.step == 1
    assert [m.role for m in first_step.outcome.messages] == ["user", "assistant", "tool"]
    run = events[-1][1]
    assert isinstance(run, RunFinished)
    assert run.result.steps == 2
    assert run.result.output == "Done."
    assert run.result.usage is not None


async def test_events_round_trip_through_json() -> None:
    script = [one_per_second([call("c1", 1), call("c2", 0, "broken")]), answer_in_order]
    events = [event for _, event in await collect(agent_for(*script).run_stream("go"))]
    adapter: TypeAdapter[AgentEvent] = TypeAdapter(AgentEvent)
    for event in events:
        again = adapter.validate_json(adapter.dump_json(event))
        assert type(again) is type(event)
        if not isinstance(event, ToolFinished):
            assert again == event
    failed = next(e for e in events if isinstance(e, ToolFinished) and e.output.is_error)
    assert isinstance(failed.error, ValueError)  # kept on the event, not serialized
    assert failed.output.content == "tool 'broken' failed: ValueError: c2 broke"


async def test_a_slow_consumer_does_not_delay_any_tool() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    async with agent.run_stream("go") as events:
        async for event in events:
            if isinstance(event, ToolCallStarted) and event.index == 0:
                await anyio.sleep(20)  # the consumer is busy while the run goes on
    assert {key: at for what, key, at in log if what == "start"} == {
        f"c{k}": k for k in range(1, 6)
    }


# -- limits, timeouts, barriers and policies apply to streamed tools -----------------------------


async def test_the_tool_limit_applies_to_streamed_tools() -> None:
    router = ToolRouter([work])
    probe = InFlightProbe(router)
    agent = Agent(
        ScriptedModel([one_per_second(five_calls()), answer_in_order]),
        tools=probe,
        catalog=router,
        tool_limit=1,
    )
    events = await collect(agent.run_stream("go"))
    assert probe.peak == 1
    assert times(events, ToolStarted) == {"c1": 1, "c2": 5, "c3": 6, "c4": 7, "c5": 8}
    assert max(times(events, ToolFinished).values()) == 9


async def test_a_limit_around_the_router_holds_across_streamed_tools() -> None:
    router = ToolRouter([work])
    probe = InFlightProbe(router)
    limited = ServiceBuilder().layer(ConcurrencyLimitLayer(2)).service(probe)
    agent = Agent(
        ScriptedModel([one_per_second(five_calls()), answer_in_order]),
        tools=limited,
        catalog=router,
    )
    await collect(agent.run_stream("go"))
    assert probe.peak == 2
    starts = {key: at for what, key, at in log if what == "start"}
    # c1 holds one permit until 5; c2 runs 2..3, c3 3..4, c4 4..5, c5 5..6
    assert starts == {"c1": 1, "c2": 2, "c3": 3, "c4": 4, "c5": 5}


async def test_a_tools_own_concurrency_limit_holds_for_streamed_calls() -> None:
    @tool(name="work", concurrency_limit=1)
    async def single(key: str, seconds: float) -> str:
        """One at a time."""
        log.append(("start", key, anyio.current_time()))
        await anyio.sleep(seconds)
        return key

    agent = agent_for(
        one_per_second([call("a", 2), call("b", 1)]), answer_in_order, tools=ToolRouter([single])
    )
    events = await collect(agent.run_stream("go"))
    assert times(events, ToolStarted) == {"a": 1, "b": 2}  # b took its place at 2...
    assert {key: at for what, key, at in log if what == "start"} == {"a": 1, "b": 3}  # ran at 3


async def test_the_tool_timeout_applies_to_streamed_tools() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order, tool_timeout=2)
    events = await collect(agent.run_stream("go"))
    assert times(events, ToolFinished)["c1"] == 3  # started at 1, cut at 3
    result = events[-1][1]
    assert isinstance(result, RunFinished)
    assert "c1=tool 'work' timed out after 2 seconds" in result.result.output


async def test_under_isolate_a_failed_tool_is_an_error_output_and_the_run_goes_on() -> None:
    calls = [call("c1", 2), call("c2", 0.5, "broken"), call("c3", 1)]
    events = await collect(agent_for(one_per_second(calls), answer_in_order).run_stream("go"))
    failed = [e for _, e in events if isinstance(e, ToolFinished) and e.error is not None]
    assert [e.output.id for e in failed] == ["c2"]
    result = events[-1][1]
    assert isinstance(result, RunFinished)
    assert result.result.output == (
        "c1=c1 done c2=tool 'broken' failed: ValueError: c2 broke c3=c3 done"
    )


async def test_malformed_arguments_of_a_streamed_call_reach_the_model_as_an_error() -> None:
    bad = ToolCall(id="c1", name="work", raw_arguments='{"key": "c1", "sec')
    events = await collect(agent_for(one_per_second([bad]), answer_in_order).run_stream("go"))
    finished = next(e for _, e in events if isinstance(e, ToolFinished))
    assert isinstance(finished.error, InvalidToolArguments)
    assert finished.output.is_error
    assert not log  # the tool never ran


async def test_fail_fast_cancels_the_stream_and_every_running_tool_at_the_first_failure() -> None:
    calls = [call("c1", 4), call("c2", 0.5, "broken"), call("c3", 1), call("c4", 1)]
    agent = agent_for(one_per_second(calls), answer_in_order, policy=JoinPolicy.FAIL_FAST)
    seen: list[tuple[float, AgentEvent]] = []
    with pytest.raises(ValueError, match="c2 broke"):
        await collect(agent.run_stream("go"), seen)
    assert anyio.current_time() == 2.5  # c2 failed at 2.5: nothing waited for c1 or the model
    assert ("cancelled", "c1", 2.5) in log
    assert not any(isinstance(e, ToolCallComplete) and e.index >= 2 for _, e in seen)
    await wait_all_tasks_blocked()
    assert [what for what, _, _ in log].count("end") == 0  # nothing went on afterwards


async def test_join_all_waits_for_every_streamed_tool_then_raises_the_earliest_failure() -> None:
    calls = [call("c1", 3), call("c2", 0.5, "broken"), call("c3", 0.5, "broken")]
    agent = agent_for(one_per_second(calls), answer_in_order, policy=JoinPolicy.JOIN_ALL)
    with pytest.raises(ValueError, match="c2 broke") as caught:
        await collect(agent.run_stream("go"))
    assert anyio.current_time() == 4  # c1 ran to its end
    outcomes = caught.value.tool_outcomes  # type: ignore[attr-defined]
    assert [type(o).__name__ for o in outcomes] == ["ToolOutput", "ValueError", "ValueError"]


async def test_a_sequential_tool_in_a_stream_runs_alone() -> None:
    calls = [call("a", 3), call("s", 1, "alone"), call("b", 1)]
    events = await collect(agent_for(one_per_second(calls), answer_in_order).run_stream("go"))
    starts = {key: at for what, key, at in log if what == "start"}
    # a runs 1..4; s completes at 2 but waits for a, runs 4..5; b completes at 3, waits for s
    assert starts == {"a": 1, "s": 4, "b": 5}
    assert times(events, ToolStarted) == starts


async def test_the_last_allowed_step_starts_no_tool() -> None:
    agent = agent_for(one_per_second([call("c1", 1)]), max_steps=1)
    with pytest.raises(MaxStepsExceeded, match="after 1 model calls"):
        await collect(agent.run_stream("go"))
    assert not log


# -- cancellation: nothing keeps running ---------------------------------------------------------


async def test_breaking_out_of_the_block_cancels_every_tool_it_started() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    async with agent.run_stream("go") as events:
        async for event in events:
            if isinstance(event, ToolStarted) and event.index == 1:
                break
    assert anyio.current_time() == 2
    assert [(what, key) for what, key, _ in log[:2]] == [("start", "c1"), ("start", "c2")]
    assert sorted((what, key, at) for what, key, at in log[2:]) == [
        ("cancelled", "c1", 2),
        ("cancelled", "c2", 2),
    ]
    await anyio.sleep(10)
    assert len(log) == 4  # nothing went on: no tool, no model call


async def test_cancelling_the_consumers_scope_cancels_the_run() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    with anyio.move_on_after(2.5):
        await collect(agent.run_stream("go"))
    assert anyio.current_time() == 2.5
    assert sorted(key for what, key, _ in log if what == "cancelled") == ["c1", "c2"]
    await anyio.sleep(10)
    assert not any(what == "start" and key in ("c3", "c4") for what, key, _ in log)


async def test_an_error_in_the_consumer_propagates_unchanged_and_cancels_the_run() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)

    async def consume() -> None:
        async with agent.run_stream("go") as events:
            async for event in events:
                if isinstance(event, ToolStarted):
                    raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await consume()
    assert [(what, key) for what, key, _ in log] == [("start", "c1"), ("cancelled", "c1")]


async def test_aclose_inside_the_block_stops_the_run_but_not_the_block() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    async with agent.run_stream("go") as events:
        async for event in events:
            if isinstance(event, ToolStarted):
                with anyio.move_on_after(100):  # inside a scope of the consumer's own
                    await events.aclose()
        assert [(what, key) for what, key, _ in log] == [("start", "c1"), ("cancelled", "c1")]
        await anyio.sleep(1)  # the block itself is not cancelled
    assert anyio.current_time() == 2


async def test_without_async_with_the_stream_still_runs_to_its_end() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    kinds = [type(event) async for event in agent.run_stream("go")]
    assert kinds[-1] is RunFinished
    assert anyio.current_time() == 6
    assert kinds.count(ToolFinished) == 5


async def test_without_async_with_cancelling_the_consumer_stops_the_run_at_once() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    with anyio.move_on_after(2.5):
        async for _ in agent.run_stream("go"):
            pass
    assert sorted(key for what, key, _ in log if what == "cancelled") == ["c1", "c2"]
    await anyio.sleep(10)
    assert len(log) == 4


async def test_without_async_with_aclosing_stops_the_run() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    async with contextlib.aclosing(agent.run_stream("go")) as events:
        async for event in events:
            if isinstance(event, ToolStarted):
                break
    assert [(what, key) for what, key, _ in log] == [("start", "c1"), ("cancelled", "c1")]
    await anyio.sleep(10)
    assert len(log) == 2


async def test_without_async_with_a_dropped_stream_stops_its_run() -> None:
    agent = agent_for(one_per_second(five_calls()), answer_in_order)
    async for event in agent.run_stream("go"):
        if isinstance(event, ToolStarted):
            break
    gc.collect()  # CPython has already dropped it: the last reference went with the loop
    await wait_all_tasks_blocked()
    assert [(what, key) for what, key, _ in log] == [("start", "c1"), ("cancelled", "c1")]
    await anyio.sleep(10)
    assert len(log) == 2


async def test_a_stream_runs_once() -> None:
    agent = agent_for(Message.assistant("hi"))
    stream = agent.run_stream("go")
    assert [type(e) for _, e in await collect(stream)][-1] is RunFinished
    with pytest.raises(RuntimeError, match="already started"):
        await stream.__aenter__()
    assert [e async for e in stream] == []  # closed: nothing more


async def test_a_stream_left_unread_starts_nothing() -> None:
    model = ScriptedModel([one_per_second(five_calls())])
    agent = Agent(model, tools=ToolRouter([work]))
    await agent.run_stream("go").aclose()  # never started
    async with agent.run_stream("go"):
        pass  # left at once: the run is cancelled before its first call completes
    await anyio.sleep(10)
    assert not log


# -- step services that cannot stream, and streams that break their promises --------------------


async def test_a_step_service_without_stream_is_called_once_per_step() -> None:
    model = ScriptedModel([one_per_second(five_calls()), answer_in_order])
    step = ServiceBuilder().concurrency_limit(1).service(model)  # layers do not pass stream on
    events = await collect(Agent(step, tools=ToolRouter([work])).run_stream("go"))
    assert isinstance(events[0][1], ModelFinished)
    assert events[0][0] == 5
    assert max(times(events, ToolFinished).values()) == 9  # tools start when the answer is in


async def test_tools_run_by_a_parallel_tools_layer_are_not_run_again() -> None:
    router = ToolRouter([work])
    model = ScriptedModel([Message.assistant(tool_calls=[call("c1", 1)]), answer_in_order])
    step = ParallelToolsLayer(router).layer(model)
    events = await collect(Agent(step, tools=router).run_stream("go"))
    assert not any(isinstance(e, ToolStarted) for _, e in events)
    assert [key for what, key, _ in log if what == "start"] == ["c1"]
    last = events[-1][1]
    assert isinstance(last, RunFinished)
    assert last.result.output == "c1=c1 done"


class Lying(Service[ChatRequest, StepOutcome]):
    """A step service whose stream reports one call complete and ends with another."""

    def __init__(self, said: ToolCall, final: list[ToolCall] | None, last: bool = True) -> None:
        self.said, self.final, self.last = said, final, last

    async def call(self, request: ChatRequest) -> StepOutcome:
        raise AssertionError("run_stream uses stream()")

    def stream(self, request: ChatRequest) -> StepStream:
        async def events() -> Any:
            yield ToolCallComplete(index=0, call=self.said)
            if self.last:
                answer = Message.assistant(tool_calls=self.final or [])
                yield ModelFinished(
                    outcome=StepOutcome(
                        messages=[*request.messages, answer],
                        tool_calls=[c.to_invocation() for c in answer.tool_calls],
                        done=not answer.tool_calls,
                    )
                )

        return StepStream(events())


@pytest.mark.parametrize(
    ("lying", "message"),
    [
        (Lying(call("c1", 1), [call("c1", 2)]), "was complete, but its final outcome has"),
        (Lying(call("c1", 1), None), "was complete, but its final outcome has"),
        (Lying(call("c1", 1), None, last=False), "ended without a ModelFinished event"),
    ],
)
async def test_a_stream_whose_outcome_disagrees_with_its_events_fails_clearly(
    lying: Lying, message: str
) -> None:
    agent = Agent(lying, tools=ToolRouter([work]))
    with pytest.raises(RuntimeError, match=message):
        await collect(agent.run_stream("go"))
    await wait_all_tasks_blocked()
    assert all(what != "end" for what, _, _ in log)


async def test_a_providers_failure_mid_stream_is_raised_from_the_iteration() -> None:
    def fail(request: ChatRequest) -> Message:
        raise ProviderError("boom", provider="fake", retryable=True)

    agent = agent_for(fail)
    with pytest.raises(ProviderError, match="boom"):
        await collect(agent.run_stream("go"))


async def test_bad_prompts_are_refused_when_the_stream_is_made() -> None:
    agent = agent_for()
    with pytest.raises(ValueError, match="non-empty list of Message"):
        agent.run_stream([])
    with pytest.raises(TypeError, match="early_start must be a bool, got str"):
        agent.run_stream("go", early_start="no")  # type: ignore[arg-type]
