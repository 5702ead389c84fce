"""The events of a streamed model call, and of a streamed agent run.

A step service that streams (`OpenAIChatModel`, `AnthropicModel`, `ScriptedModel`) has a
``stream(request)`` method next to ``call(request)``. It returns a `StepStream` of `StepEvent`:

- `TextDelta`: a piece of the answer's text, as it arrives;
- `ToolCallStarted`: the model began writing a tool call (its id and name are known);
- `ToolCallComplete`: that call's arguments are complete and final, parsed (text that is not a
  JSON object is kept as ``raw_arguments``, exactly as ``call()`` keeps it);
- `ModelFinished`: the answer is over; its `StepOutcome` is the one ``call()`` would return,
  usage included. It is always the last event.

`Agent.run_stream` yields `AgentEvent`: every event of each model call, and

- `ToolStarted`: a tool call took its place in the batch (with early start: the moment its
  arguments were complete); it may still wait for the router's own capacity;
- `ToolFinished`: it finished, with its output (for a failure, an error output, and the error);
- `StepFinished`: one step is done: the model's outcome with the tool results appended (or
  the final answer);
- `RunFinished`: the run is over; it carries the `AgentResult`, and is the last event.

Every event is a small frozen pydantic model with a ``kind`` field, so ``TypeAdapter(AgentEvent)``
reads and writes them as JSON (to forward a run to a browser, say); match on the classes.
"""

# no `from __future__ import annotations`: pydantic reads these annotations at runtime
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Annotated, Any, Literal, Self, TypeAlias, final

from pydantic import BaseModel, ConfigDict, Field

from ..tools.models import ToolInvocation, ToolOutput
from ._result import AgentResult
from .messages import StepOutcome, ToolCall

__all__ = [
    "AgentEvent",
    "ModelFinished",
    "RunFinished",
    "StepEvent",
    "StepFinished",
    "StepStream",
    "TextDelta",
    "ToolCallComplete",
    "ToolCallStarted",
    "ToolFinished",
    "ToolStarted",
]


class TextDelta(BaseModel, frozen=True):
    """A piece of the model's text. Joined in order, the pieces are the answer's text.

    Attributes:
        text: The new text.
    """

    kind: Literal["text_delta"] = "text_delta"
    text: str


class ToolCallStarted(BaseModel, frozen=True):
    """The model began writing a tool call; its arguments are still coming.

    Attributes:
        index: The call's position in the answer, from 0.
        id: The call's id.
        name: The tool's name.
    """

    kind: Literal["tool_call_started"] = "tool_call_started"
    index: int
    id: str
    name: str


class ToolCallComplete(BaseModel, frozen=True):
    """A tool call's arguments are complete: the call is final and can run.

    Attributes:
        index: The call's position in the answer, from 0.
        call: The call, its arguments parsed (``raw_arguments`` holds text that was not a JSON
            object, as in a non-streamed answer).
    """

    kind: Literal["tool_call_complete"] = "tool_call_complete"
    index: int
    call: ToolCall

    @property
    def invocation(self) -> ToolInvocation:
        """The `ToolInvocation` a tool router runs for this call."""
        return self.call.to_invocation()


class ModelFinished(BaseModel, frozen=True):
    """The model's answer is over: the last event of a model call's stream.

    Attributes:
        outcome: What ``call()`` would have returned for the same answer, usage included.
    """

    kind: Literal["model_finished"] = "model_finished"
    outcome: StepOutcome


class ToolStarted(BaseModel, frozen=True):
    """A tool call took its place in the batch: it runs, or waits for the router's capacity.

    Attributes:
        index: The call's position in its model answer, from 0.
        invocation: What runs.
    """

    kind: Literal["tool_started"] = "tool_started"
    index: int
    invocation: ToolInvocation


class ToolFinished(BaseModel):
    """A tool call finished.

    Attributes:
        index: The call's position in its model answer, from 0.
        output: The tool's output; for a failure, an error output saying what went wrong.
        error: The exception, when the tool failed (not serialized).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    kind: Literal["tool_finished"] = "tool_finished"
    index: int
    output: ToolOutput
    error: Exception | None = Field(default=None, exclude=True, repr=False)


class StepFinished(BaseModel, frozen=True):
    """A step is done: the model answered, and the tools it asked for have finished.

    Attributes:
        step: The step's number, from 1 (the number of model calls so far).
        outcome: The model's outcome with one tool message per call appended (``done=False``),
            or the final answer's outcome (``done=True``).
    """

    kind: Literal["step_finished"] = "step_finished"
    step: int
    outcome: StepOutcome


class RunFinished(BaseModel, frozen=True):
    """The run is over: the last event of `Agent.run_stream`.

    Attributes:
        result: What `Agent.run` would have returned.
    """

    kind: Literal["run_finished"] = "run_finished"
    result: AgentResult


StepEvent: TypeAlias = Annotated[
    TextDelta | ToolCallStarted | ToolCallComplete | ModelFinished, Field(discriminator="kind")
]
"""An event of a streamed model call."""

AgentEvent: TypeAlias = Annotated[
    TextDelta
    | ToolCallStarted
    | ToolCallComplete
    | ModelFinished
    | ToolStarted
    | ToolFinished
    | StepFinished
    | RunFinished,
    Field(discriminator="kind"),
]
"""An event of a streamed agent run."""


@final
class StepStream:
    """The events of one streamed model call: an async iterator and an async context manager.

    Consume it with ``async with model.stream(request) as events: async for event in events:``:
    leaving the block, by a ``break``, an exception or a cancellation, closes the response at
    once. Iterated to its end (the `ModelFinished` event) it closes itself. Nothing runs
    between two events: the stream reads the response only while you wait for the next one.
    """

    __slots__ = ("_events",)

    def __init__(self, events: AsyncGenerator[Any, None]) -> None:
        self._events = events

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StepEvent:
        event: StepEvent = await self._events.__anext__()
        return event

    async def aclose(self) -> None:
        """Stops the call: closes the response (nothing happens when it is over)."""
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"StepStream({self._events!r})"
