"""Reading a streamed Chat Completions answer (``chat.completion.chunk`` objects) into step events.

A chunk's ``delta`` carries text, and pieces of tool calls keyed by ``index``: the first piece of
a call has its id and name, the others more argument text. Calls arrive one after another, so a
call is complete when a later call begins, or when the choice's ``finish_reason`` arrives (or the
stream ends): only then is its argument text final. A server that goes back to a call after a
later one began breaks that order; the stream then fails, since the earlier call may already
be running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from ._errors import error_from_body, unreadable_answer
from ._openai_wire import build_outcome, new_call_id, read_usage
from ._sdk import parse_arguments
from .events import ModelFinished, TextDelta, ToolCallComplete, ToolCallStarted
from .messages import ToolCall

if TYPE_CHECKING:
    from .._ratelimits import RateLimitInfo
    from .events import StepEvent
    from .messages import ChatRequest, Usage

__all__ = ["ChunkReader"]


@final
class _Call:
    """One tool call being written."""

    __slots__ = ("arguments", "done", "id", "name", "started", "wire_id")

    def __init__(self, wire_id: str | None) -> None:
        self.wire_id = wire_id
        self.id = wire_id or new_call_id()
        self.name: list[str] = []
        self.arguments: list[str] = []
        self.started = False
        self.done: ToolCall | None = None  # set once complete


@final
class ChunkReader:
    """Turns the chunks of one streamed answer into step events, and the final outcome.

    `feed` takes each chunk as the SDK yields it and returns the events it makes; `finish`,
    once the stream has ended, returns the `ModelFinished` event (and any calls it completes).
    Only the first choice is read, as in a non-streamed answer.
    """

    __slots__ = (
        "_by_key",
        "_calls",
        "_finish_reason",
        "_last_key",
        "_rate_limits",
        "_refusal",
        "_request",
        "_request_id",
        "_seen",
        "_text",
        "_usage",
    )

    def __init__(
        self,
        request: ChatRequest,
        *,
        request_id: str | None = None,
        rate_limits: RateLimitInfo | None = None,
    ) -> None:
        self._request = request
        self._request_id = request_id
        self._rate_limits = rate_limits
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._calls: list[_Call] = []
        self._by_key: dict[object, int] = {}
        self._last_key: object = None
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._seen = False  # a choice arrived

    def feed(self, chunk: Any) -> list[StepEvent]:
        """Reads one chunk.

        Raises:
            ProviderError: The chunk carries an error, or a tool call went on after a later one
                began.
        """
        extra = getattr(chunk, "model_extra", None)
        if extra and extra.get("error"):
            raise error_from_body(
                "openai", extra["error"], request_id=self._request_id, what="an error in the stream"
            )
        events: list[StepEvent] = []
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = read_usage(usage)
        for choice in getattr(chunk, "choices", None) or ():
            if getattr(choice, "index", 0) not in (0, None):
                continue
            self._seen = True
            delta = choice.delta
            if delta is not None:
                text = delta.content
                if text:
                    self._text.append(text)
                    events.append(TextDelta(text=text))
                refusal = getattr(delta, "refusal", None)
                if refusal:
                    self._refusal.append(refusal)
                for wire_call in getattr(delta, "tool_calls", None) or ():
                    self._tool_piece(wire_call, events)
            if choice.finish_reason:
                self._finish_reason = choice.finish_reason
                self._complete_all(events)
        return events

    def _tool_piece(self, wire_call: Any, events: list[StepEvent]) -> None:
        wire_id: str | None = getattr(wire_call, "id", None)
        wire_index = getattr(wire_call, "index", None)
        if wire_index is not None:
            key: object = wire_index
        elif wire_id:
            key = wire_id  # a lax server without indexes: a new id is a new call
        else:
            key = self._last_key  # more of the call being written
        self._last_key = key
        position = self._by_key.get(key)
        if position is None:
            self._complete_all(events)  # calls arrive one after another: the earlier are final
            position = len(self._calls)
            self._by_key[key] = position
            call = _Call(wire_id)
            self._calls.append(call)
        else:
            call = self._calls[position]
            if call.done is not None:
                raise unreadable_answer(
                    "openai",
                    ValueError(
                        f"tool call {position} went on after a later tool call began; a streamed "
                        f"call is taken as complete when the next one begins"
                    ),
                    request_id=self._request_id,
                )
            if call.wire_id is None and wire_id:
                call.wire_id = call.id = wire_id
        function = getattr(wire_call, "function", None)
        if function is not None:
            if function.name:
                call.name.append(function.name)
            if function.arguments:
                call.arguments.append(function.arguments)
        if not call.started and call.name:
            call.started = True
            events.append(ToolCallStarted(index=position, id=call.id, name="".join(call.name)))

    def _complete_all(self, events: list[StepEvent]) -> None:
        for position, call in enumerate(self._calls):
            if call.done is not None:
                continue
            name = "".join(call.name)
            if not call.started:
                call.started = True
                events.append(ToolCallStarted(index=position, id=call.id, name=name))
            arguments, raw = parse_arguments("".join(call.arguments))
            call.done = ToolCall(id=call.id, name=name, arguments=arguments, raw_arguments=raw)
            events.append(ToolCallComplete(index=position, call=call.done))

    def finish(self) -> list[StepEvent]:
        """Ends the answer: completes the calls still open, then the `ModelFinished` event.

        Raises:
            ProviderError: The stream ended without any choice.
        """
        if not self._seen:
            raise error_from_body(
                "openai", None, request_id=self._request_id, what="no choices in the stream"
            )
        events: list[StepEvent] = []
        self._complete_all(events)
        outcome = build_outcome(
            self._request,
            "".join(self._text) or None,
            "".join(self._refusal) or None,
            [call.done for call in self._calls if call.done is not None],
            self._usage,
            self._finish_reason,
            self._rate_limits,
        )
        events.append(ModelFinished(outcome=outcome))
        return events
