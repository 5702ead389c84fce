"""Agent: the loop that calls the model, runs the tools it asks for, and calls it again."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import anyio
from typing_extensions import override

from .. import _observe
from .._backend import in_event_loop
from .._service import Service
from .._validate import check_instance, check_plain_function, check_positive_int, check_str
from ..errors import MaxStepsExceeded
from ..limit.concurrency import ConcurrencyLimit
from ..tools.parallel import JoinPolicy, ParallelToolRouter, catalog_of
from ..tools.router import ToolRouter
from ._agent_stream import AgentStream
from ._result import AgentResult, add_usage, answered, final_text
from .messages import ChatRequest, Message, StepOutcome, Usage

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Self

    from ..limit.protocols import ConcurrencyBackend
    from ..tools.models import ToolInvocation, ToolOutput, ToolSpec
    from ..tools.router import ToolCatalog

__all__ = ["Agent", "AgentResult"]


@final
class Agent(Service[str | list[Message], AgentResult]):
    """Runs the loop step → tools → step until the model answers without asking for tools.

    Each model call is a `ChatRequest` with the conversation so far and the specs of the
    router's tools, sent to ``step`` (any step service: `ScriptedModel`, a provider adapter,
    perhaps wrapped in rate limits, retries, timeouts). When the outcome asks for tools and the
    step service has not already run them (a `ParallelToolsLayer` does), the agent runs them
    through a `ParallelToolRouter` and appends one tool message per call, in call order. One
    agent object may run any number of conversations at once.

    An agent is a service of whole runs: ``await agent(prompt)`` is ``await agent.run(prompt)``,
    so any layer wraps it — ``ServiceBuilder().concurrency_limit(2).timeout(120).service(agent)``
    allows two runs at once and cancels a run (its model call and its tools) after two
    minutes. ``ready()`` returns at once; the step service and the tools wait for their own
    capacity.

    Args:
        step: The step service: one model call per request.
        tools: The tools the model may call (a `ToolRouter`, perhaps wrapped in layers).
        max_steps: The most model calls one `run` makes.
        system: A system message put first in every conversation.
        tool_limit: The most tool calls of one model answer (one batch) in flight at once.
            It bounds each batch on its own: runs going on at the same time each have their
            own ``tool_limit``.
        shared_tool_limit: The most tool calls in flight across every run of this agent at
            once (an int), or a `ConcurrencyLimiter` to share that bound with other agents;
            None (the default) for no bound beyond ``tool_limit``. Both bounds hold together.
        policy: What happens when a tool call fails (default: the model reads the error).
        tool_timeout: Seconds each tool may run once it has started (waiting for its
            concurrency permit or a worker thread is not counted), or None.
        wait_timeout: Seconds each tool call may wait for that capacity before it starts, or
            None; one that waits longer fails with `WaitElapsed`.
        catalog: The tools' specs and sequential flags (default: ``tools`` itself; give the
            `ToolRouter` when ``tools`` wraps it in layers).
        tool_priority: Returns a tool call's priority: of an answer asking for more than
            ``tool_limit`` tools, the highest start first (see `ParallelToolRouter`); None
            for call order.

    Raises:
        TypeError: ``step`` or ``tools`` is not a service, ``tools`` is not a `ToolCatalog`
            and no ``catalog`` is given (the model could not be told which tools it has), or
            another argument has the wrong type (``max_steps`` not an int, ``system`` not a
            str...).
        ValueError: ``max_steps``, ``tool_limit`` or ``shared_tool_limit`` below 1 (and see
            `ParallelToolRouter`).
    """

    __slots__ = ("_catalog", "_parallel", "max_steps", "step", "system", "tools")

    def __init__(
        self,
        step: Service[ChatRequest, StepOutcome],
        *,
        tools: ToolRouter | Service[ToolInvocation, ToolOutput] | None = None,
        max_steps: int = 10,
        system: str | None = None,
        tool_limit: int = 5,
        policy: JoinPolicy = JoinPolicy.ISOLATE,
        tool_timeout: float | None = None,
        wait_timeout: float | None = None,
        catalog: ToolCatalog | None = None,
        shared_tool_limit: int | ConcurrencyBackend | None = None,
        tool_priority: Callable[[ToolInvocation], int] | None = None,
    ) -> None:
        check_instance("step", step, Service, "a step service (e.g. a ScriptedModel)")
        if tools is not None:
            check_instance("tools", tools, Service, "a ToolRouter (or a Service of invocations)")
        check_positive_int("max_steps", max_steps)
        if system is not None:
            check_str("system", system)
        # the router checks the rest, but under its own names: limit= is tool_limit= here
        check_positive_int("tool_limit", tool_limit)
        if tool_priority is not None:
            check_plain_function("tool_priority", tool_priority)
        self.step = step
        self.tools = tools
        self.max_steps = max_steps
        self.system = system
        router = tools if tools is not None else ToolRouter()
        found = catalog_of(router, catalog)
        if found is None:
            raise TypeError(
                f"Agent cannot tell the model which tools it has: tools={tools!r} is not a "
                f"ToolRouter; pass the ToolRouter inside it as catalog=..."
            )
        self._catalog: ToolCatalog = found
        if isinstance(shared_tool_limit, int):
            router = ConcurrencyLimit(router, shared_tool_limit)
        elif shared_tool_limit is not None:
            router = ConcurrencyLimit(router, limiter=shared_tool_limit)
        self._parallel = ParallelToolRouter(
            router,
            tool_limit,
            policy,
            tool_timeout,
            wait_timeout=wait_timeout,
            catalog=self._catalog,
            priority=tool_priority,
        )

    @property
    def specs(self) -> list[ToolSpec]:
        """The specs every request carries: those of the catalog (``tools``)."""
        return list(self._catalog.specs)

    @override
    async def call(self, request: str | list[Message]) -> AgentResult:
        """Runs one conversation: `run`."""
        return await self.run(request)

    async def run(self, prompt: str | list[Message]) -> AgentResult:
        """Runs one conversation to the model's final answer.

        Args:
            prompt: The user's message, or a conversation to continue.

        Returns:
            The final answer, the whole conversation, and the number of model calls.

        Raises:
            MaxStepsExceeded: The model still asked for tools after ``max_steps`` calls.
            TypeError: ``prompt`` is neither a str nor a list of `Message`.
            ValueError: ``prompt`` is an empty list.
        """
        if _observe.agent_run is not None and _observe.entering(prompt):
            traced: AgentResult = await _observe.agent_run(self, prompt)  # again, in a span
            return traced
        messages = self._start(prompt)
        specs = self.specs
        usage: Usage | None = None
        for steps in range(1, self.max_steps + 1):
            step = self.step if _observe.model_step is None else _observe.model_step(self)
            outcome = await step(ChatRequest(messages=messages, tools=specs))
            usage = add_usage(usage, outcome.usage)
            if outcome.done:
                return AgentResult(
                    output=final_text(outcome.messages),
                    messages=list(outcome.messages),
                    steps=steps,
                    usage=usage,
                )
            if steps == self.max_steps:
                raise MaxStepsExceeded(
                    f"the model still asks for tools after {steps} model calls "
                    f"(max_steps={self.max_steps}); raise max_steps, or look at the tool "
                    f"results in .messages",
                    messages=list(outcome.messages),
                )
            if not answered(outcome):
                outcome = outcome.with_tool_results(await self._parallel(outcome.tool_calls))
            messages = list(outcome.messages)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def run_stream(self, prompt: str | list[Message], *, early_start: bool = True) -> AgentStream:
        """Runs one conversation as `run` does, yielding its events as they happen.

        Consume it as ``async with agent.run_stream(prompt) as events: async for event in
        events:``. It yields every event of each model call (`TextDelta`, `ToolCallStarted`,
        `ToolCallComplete`, `ModelFinished`), `ToolStarted` and `ToolFinished` for each tool
        call, `StepFinished` after each step, and lastly `RunFinished` with the `AgentResult`.
        The model is called through its ``stream(request)`` method when the step service has
        one (the provider adapters and `ScriptedModel` do; layers around them do not pass it
        through), else through ``call()``, as one `ModelFinished` event.

        With ``early_start``, each tool call starts the moment its arguments are complete,
        while the model is still writing the rest of its answer: through the same
        `ParallelToolRouter` as `run`, under the same limit, timeouts, barriers and join
        policy, and the next model call still sees the results in call order. On the last
        allowed step no tool starts (the run fails with `MaxStepsExceeded`, as `run` does).

        Leaving the ``async with`` block, by a ``break``, an exception or a cancellation,
        cancels the model call and every tool the run started, and waits for them. See
        `AgentStream` for iterating without the block.

        Args:
            prompt: The user's message, or a conversation to continue.
            early_start: Start each tool call as soon as it is complete (True), or only once
                the model's answer is over (False, as `run` does).

        Returns:
            The stream of the run's events; the run fails by raising from the iteration
            (`MaxStepsExceeded`, a provider's error, a tool's under ``FAIL_FAST``/``JOIN_ALL``).

        Raises:
            ValueError: ``prompt`` is neither a str nor a non-empty list of messages.
            TypeError: ``early_start`` is not a bool, or a message of ``prompt`` not a message.
        """
        check_instance("early_start", early_start, bool, "a bool")
        return AgentStream(self, self._start(prompt), early_start=early_start)

    def run_sync(self, prompt: str | list[Message], *, backend: str = "asyncio") -> AgentResult:
        """Runs `run` in a new event loop, for scripts and notebooks without one.

        Raises:
            RuntimeError: Called from inside a running event loop; ``await agent.run(...)``
                there instead.
        """
        if in_event_loop():
            raise RuntimeError(
                "Agent.run_sync() cannot be called from inside a running event loop; "
                "use `await agent.run(...)` there instead"
            )
        result: AgentResult = anyio.run(self.run, prompt, backend=backend)
        return result

    def _start(self, prompt: str | list[Message]) -> list[Message]:
        check_instance("prompt", prompt, (str, list), "a str or a list of Message")
        if isinstance(prompt, str):
            messages = [Message.user(prompt)]
        else:
            if not prompt:
                raise ValueError("prompt must be a str or a non-empty list of Message, got []")
            messages = list(prompt)
            for message in messages:
                if not isinstance(message, Message):
                    raise TypeError(f"a conversation is a list of Message, got {message!r}")
        if self.system is not None and messages[0].role != "system":
            messages.insert(0, Message.system(self.system))
        return messages

    async def __aenter__(self) -> Self:
        """Enters the step service and the tools (for layers with background work)."""
        await self.step.__aenter__()
        if self.tools is not None:
            try:
                await self.tools.__aenter__()
            except BaseException as exc:
                await self.step.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Exits the tools, then the step service."""
        try:
            if self.tools is not None:
                await self.tools.__aexit__(exc_type, exc, tb)
        finally:
            await self.step.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"Agent({self.step!r}, tools={self.tools!r}, max_steps={self.max_steps})"
