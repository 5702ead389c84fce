"""AgentStream: the events of one agent run, with each tool started as its call completes.

The run itself (model streams, tool calls) happens in a task of its own that sends its events
through an unbounded memory stream, so it never waits for the consumer: a slow consumer cannot
delay a tool. Two ways to host that task:

- ``async with agent.run_stream(prompt) as events:`` enters a task group in the consumer's task,
  the pattern anyio recommends (an async context manager holds the task group; an iterator never
  yields from inside one). Leaving the block, by a ``break``, an exception or a cancellation,
  cancels the run and every tool it started, and waits for them: nothing keeps running.
- ``async for event in agent.run_stream(prompt):`` without ``async with`` hosts the run in a task
  outside the consumer's cancel scopes (an asyncio task, or a trio system task), since an
  iterator may not hold a task group across its yields. Cancelling the consumer while it waits
  for an event stops the run at once (and waits for it); ``aclose()`` does too. A consumer that
  just stops iterating stops the run when the stream object is garbage-collected (at once in
  CPython, when the last reference goes).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import TYPE_CHECKING, Any, Protocol, final

import anyio

from .. import _backend, _observe
from ..errors import MaxStepsExceeded
from ._result import AgentResult, add_usage, answered, final_text
from .events import (
    ModelFinished,
    RunFinished,
    StepFinished,
    ToolCallComplete,
    ToolFinished,
    ToolStarted,
)
from .messages import ChatRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType
    from typing import Self

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from .._service import Service
    from ..tools.models import ToolInvocation, ToolOutput, ToolSpec
    from ..tools.parallel import ParallelToolRouter
    from .events import AgentEvent
    from .messages import Message, StepOutcome, Usage

__all__ = ["AgentStream"]


class Agent(Protocol):
    """What a stream reads of its `towerpy.llm.Agent` (whose module imports this one)."""

    @property
    def specs(self) -> list[ToolSpec]: ...

    @property
    def step(self) -> Service[ChatRequest, StepOutcome]: ...

    @property
    def max_steps(self) -> int: ...

    @property
    def _parallel(self) -> ParallelToolRouter: ...


@final
class _Failed:
    """What the run sends instead of an event when it fails: the consumer raises ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


@final
class AgentStream:
    """The events of one `Agent.run_stream` run: an async iterator and an async context manager.

    Use it as ``async with agent.run_stream(prompt) as events: async for event in events:``;
    the run starts on entering, and leaving the block, however it is left, cancels whatever
    still runs (the model call, the tools) and waits for it. Iterated without ``async with``,
    the run starts at the first ``__anext__`` in a task of its own; ``aclose()`` (or
    ``contextlib.aclosing``) then stops it. The last event is `RunFinished`; a run that fails
    raises its error from the iteration instead (`MaxStepsExceeded`, a `ProviderError`, a tool's
    error under `JoinPolicy.FAIL_FAST` or `JoinPolicy.JOIN_ALL`).

    The run never waits for the consumer: events queue up (they are bounded by the size of the
    answers) while the consumer is busy.
    """

    __slots__ = (
        "__weakref__",
        "_agent",
        "_early_start",
        "_group",
        "_host",
        "_messages",
        "_receive",
        "_send",
        "_state",
    )

    def __init__(self, agent: Agent, messages: list[Message], *, early_start: bool) -> None:
        self._agent = agent
        self._messages = messages
        self._early_start = early_start
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        self._send: MemoryObjectSendStream[Any] = send
        self._receive: MemoryObjectReceiveStream[Any] = receive
        self._group: anyio.abc.TaskGroup | None = None
        self._host: _Host | None = None  # runs the run: in the block's task group, or detached
        self._state = "new"  # -> "running" -> "closed"

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(
                "this AgentStream has already started; call agent.run_stream() again for "
                "another run"
            )
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        self._state = "running"
        # the run has a cancel scope of its own: stopping it never cancels the block's body
        self._host = host = _Host()
        run = (self._agent, self._messages, self._early_start, self._send, False)
        group.start_soon(_hosted, host, _run, *run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        if group is None:  # pragma: no cover - __aenter__ failed, or a second exit
            return
        self._state = "closed"
        host, self._host = self._host, None
        try:
            if host is not None:
                host.cancel()
            # the block's exception is never passed in: the task group would wrap it in a group
            await group.__aexit__(None, None, None)
        finally:
            self._receive.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> AgentEvent:
        if self._state == "new":
            self._start_detached()
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            self._receive.close()  # the run is over
            raise StopAsyncIteration from None
        except anyio.ClosedResourceError:
            raise StopAsyncIteration from None
        except BaseException:
            if self._group is None and self._host is not None:
                # detached, cancelled while waiting: the run stops with us
                with anyio.CancelScope(shield=True):
                    await self.aclose()
            raise
        if isinstance(item, _Failed):
            raise item.error
        event: AgentEvent = item
        return event

    def _start_detached(self) -> None:
        self._state = "running"
        host = _Host()
        self._host = host
        host.start(_run, self._agent, self._messages, self._early_start, self._send, True)
        # a consumer that just stops iterating: the run stops when this object goes
        weakref.finalize(self, _drop, host, self._receive)

    async def aclose(self) -> None:
        """Stops the run, if it still runs, and waits until nothing it started is left.

        Inside ``async with``, the block still holds the run's task group: leaving the block
        ends it, and calling this there only stops the run early.
        """
        if self._group is not None:
            if self._host is not None:
                await self._host.stop()
            return
        if self._state == "closed":
            return
        self._state = "closed"
        host, self._host = self._host, None
        try:
            if host is not None:
                await host.stop()
            else:
                self._send.close()  # never started
        finally:
            self._receive.close()

    def __repr__(self) -> str:
        return f"AgentStream({self._agent!r}, state={self._state!r})"


@final
class _Host:
    """Runs a stream's run under a cancel scope of its own, and tells when it has ended.

    In the block's task group, or (`start`) in a task outside the consumer's cancel scopes.
    """

    __slots__ = ("_done", "_scope")

    def __init__(self) -> None:
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()

    def start(self, run: Callable[..., Awaitable[None]], *args: Any) -> None:
        _backend.current().spawn_system_task(_hosted, self, run, *args)

    def cancel(self) -> None:
        # from a finalizer too: when its event loop is gone, nothing runs anyway
        with contextlib.suppress(RuntimeError):
            self._scope.cancel()

    async def stop(self) -> None:
        self.cancel()
        with anyio.CancelScope(shield=True):
            await self._done.wait()


def _drop(host: _Host, receive: MemoryObjectReceiveStream[Any]) -> None:
    host.cancel()
    receive.close()


async def _hosted(host: _Host, run: Callable[..., Awaitable[None]], *args: Any) -> None:
    try:
        with host._scope:
            await run(*args)
    finally:
        host._done.set()


async def _run(
    agent: Agent,
    messages: list[Message],
    early_start: bool,
    send: MemoryObjectSendStream[Any],
    detached: bool,
) -> None:
    """Runs the conversation, sending its events; a failure is sent, not raised."""
    cancelled = anyio.get_cancelled_exc_class()

    def emit(item: Any) -> None:
        # a consumer that is gone (a dropped stream) reads nothing more: the run is stopping
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            send.send_nowait(item)

    with send:
        try:
            produced = _produce(agent, messages, early_start, emit)
            await (
                produced
                if _observe.agent_span is None
                else _observe.agent_span(agent, messages, produced)
            )
        except cancelled:
            raise
        except Exception as exc:
            emit(_Failed(exc))
        except BaseException as exc:
            if not detached:
                raise  # a task group hands it to the consumer's task
            # a detached host may not raise (a trio system task would crash the run)
            emit(_Failed(exc))


async def _produce(
    agent: Agent,
    messages: list[Message],
    early_start: bool,
    send: Callable[[AgentEvent], None],
) -> None:
    specs = agent.specs
    usage: Usage | None = None
    stream = getattr(agent.step, "stream", None)
    max_steps = agent.max_steps

    def started(index: int, invocation: ToolInvocation) -> None:
        send(ToolStarted(index=index, invocation=invocation))

    def finished(index: int, output: ToolOutput, error: Exception | None) -> None:
        send(ToolFinished(index=index, output=output, error=error))

    for steps in range(1, max_steps + 1):
        request = ChatRequest(messages=messages, tools=specs)
        # the last allowed step runs no tool: the run fails with MaxStepsExceeded instead
        early = early_start and steps < max_steps
        async with agent._parallel.open_batch(on_start=started, on_finish=finished) as batch:
            if stream is None:  # a step service that cannot stream: one event, at the end
                step = agent.step if _observe.model_step is None else _observe.model_step(agent)
                outcome = await step(request)
                send(ModelFinished(outcome=outcome))
            else:
                streamed = _model_stream(stream(request), send, batch.submit, early)
                outcome = await (
                    streamed
                    if _observe.model_span is None
                    else _observe.model_span(agent, request, streamed)
                )
            usage = add_usage(usage, outcome.usage)
            if outcome.done:
                _check_done(outcome, batch.invocations)
            elif steps == max_steps:
                raise MaxStepsExceeded(
                    f"the model still asks for tools after {steps} model calls "
                    f"(max_steps={max_steps}); raise max_steps, or look at the tool "
                    f"results in .messages",
                    messages=list(outcome.messages),
                )
            elif not answered(outcome):
                for invocation in _not_yet_started(outcome, batch.invocations):
                    batch.submit(invocation)
                outcome = outcome.with_tool_results(await batch.results())
        send(StepFinished(step=steps, outcome=outcome))
        if outcome.done:
            send(
                RunFinished(
                    result=AgentResult(
                        output=final_text(outcome.messages),
                        messages=list(outcome.messages),
                        steps=steps,
                        usage=usage,
                    )
                )
            )
            return
        messages = list(outcome.messages)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _model_stream(
    events: Any,
    send: Callable[[AgentEvent], None],
    submit: Callable[[ToolInvocation], int],
    early: bool,
) -> StepOutcome:
    """Reads one model stream, starting each tool call the moment it is complete."""
    outcome: StepOutcome | None = None
    try:
        async for event in events:
            send(event)
            if isinstance(event, ToolCallComplete):
                if early:
                    submit(event.invocation)
            elif isinstance(event, ModelFinished):
                outcome = event.outcome
                break
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
    if outcome is None:
        raise RuntimeError(
            "the step service's stream ended without a ModelFinished event; a stream's last "
            "event must be ModelFinished(outcome=...)"
        )
    return outcome


def _not_yet_started(outcome: StepOutcome, started: list[ToolInvocation]) -> list[ToolInvocation]:
    """The outcome's calls after those already started, which must be the first ones."""
    calls = outcome.tool_calls
    for index, invocation in enumerate(started):
        if index >= len(calls) or calls[index] != invocation:
            raise RuntimeError(
                f"the step service's stream said tool call {invocation.id!r} ({invocation.name}) "
                f"was complete, but its final outcome has "
                f"{calls[index] if index < len(calls) else 'no such call'!r} there; a stream may "
                f"only report a call complete once its arguments are final"
            )
    return calls[len(started) :]


def _check_done(outcome: StepOutcome, started: list[ToolInvocation]) -> None:
    if started:
        _not_yet_started(outcome, started)  # raises: a finished answer with calls started
