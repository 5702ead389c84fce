"""Reading a streamed Messages API answer (its server-sent events) into step events.

The answer is a sequence of content blocks, each opened by ``content_block_start``, grown by
``content_block_delta`` and closed by ``content_block_stop``. A ``tool_use`` block's arguments
arrive as pieces of JSON text (``input_json_delta``); they are complete when the block stops.
The call is announced complete on the event after that stop, which follows at once: when it is
the ``message_delta`` of a ``max_tokens`` stop, the call may have been cut short, and it is kept
with ``raw_arguments`` exactly as a non-streamed answer keeps it (the router then refuses it).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, final

from ._anthropic_wire import TRUNCATED, build_outcome, read_usage
from ._errors import error_from_body
from ._sdk import parse_arguments
from .events import ModelFinished, TextDelta, ToolCallComplete, ToolCallStarted
from .messages import ToolCall

if TYPE_CHECKING:
    from .._ratelimits import RateLimitInfo
    from .events import StepEvent
    from .messages import ChatRequest

__all__ = ["EventReader"]

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@final
class _ToolBlock:
    """One ``tool_use`` block being written."""

    __slots__ = ("id", "input", "json", "name", "position")

    def __init__(self, position: int, block: Any) -> None:
        self.position = position
        self.id: str = block.id
        self.name: str = block.name
        self.input: object = getattr(block, "input", None)
        self.json: list[str] = []


@final
class EventReader:
    """Turns the events of one streamed answer into step events, and the final outcome.

    `feed` takes each event as the SDK yields it and returns the step events it makes;
    `finish`, once the stream has ended, returns the `ModelFinished` event (after any call still
    waiting to be announced).
    """

    __slots__ = (
        "_blocks",
        "_calls",
        "_last_kind",
        "_pending",
        "_rate_limits",
        "_request",
        "_request_id",
        "_seen",
        "_stop_reason",
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
        self._calls: list[ToolCall] = []
        self._blocks: dict[int, _ToolBlock] = {}
        self._pending: ToolCall | None = None  # complete, announced on the next event
        self._last_kind: str | None = None
        self._stop_reason: str | None = None
        self._usage: dict[str, int | None] = dict.fromkeys(_USAGE_FIELDS)
        self._seen = False  # message_start arrived

    def feed(self, event: Any) -> list[StepEvent]:
        """Reads one server-sent event (``RawMessageStreamEvent``)."""
        events: list[StepEvent] = []
        kind = event.type
        if kind == "message_delta":
            self._stop_reason = event.delta.stop_reason
            if self._pending is not None and self._stop_reason in TRUNCATED:
                self._cut_short()
            self._read_usage(event.usage)
        self._announce(events)
        if kind == "content_block_start":
            self._start(event.index, event.content_block, events)
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                if delta.text:
                    self._text.append(delta.text)
                    events.append(TextDelta(text=delta.text))
            elif delta.type == "input_json_delta":
                block = self._blocks.get(event.index)
                if block is not None:
                    block.json.append(delta.partial_json)
        elif kind == "content_block_stop":
            block = self._blocks.pop(event.index, None)
            if block is not None:
                self._pending = self._complete(block)
        elif kind == "message_start":
            self._seen = True
            self._read_usage(getattr(event.message, "usage", None))
        return events

    def _start(self, index: int, block: Any, events: list[StepEvent]) -> None:
        kind = block.type
        self._last_kind = kind
        if kind == "text":
            if block.text:
                self._text.append(block.text)
                events.append(TextDelta(text=block.text))
        elif kind == "tool_use":
            tool = _ToolBlock(len(self._calls) + len(self._blocks), block)
            self._blocks[index] = tool
            events.append(ToolCallStarted(index=tool.position, id=tool.id, name=tool.name))

    @staticmethod
    def _complete(block: _ToolBlock) -> ToolCall:
        text = "".join(block.json)
        # no JSON pieces: the input came whole in the start event (usually {})
        arguments, raw = parse_arguments(text if text.strip() else block.input)
        return ToolCall(id=block.id, name=block.name, arguments=arguments, raw_arguments=raw)

    def _cut_short(self) -> None:
        # a max_tokens stop right after a tool_use block: its arguments may be incomplete
        call = self._pending
        if call is None or call.raw_arguments is not None or self._last_kind != "tool_use":
            return
        raw = json.dumps(call.arguments, ensure_ascii=False, default=str)
        self._pending = ToolCall(id=call.id, name=call.name, arguments={}, raw_arguments=raw)

    def _announce(self, events: list[StepEvent]) -> None:
        call = self._pending
        if call is None:
            return
        self._pending = None
        events.append(ToolCallComplete(index=len(self._calls), call=call))
        self._calls.append(call)

    def _read_usage(self, usage: Any) -> None:
        if usage is None:
            return
        for field in _USAGE_FIELDS:
            value = getattr(usage, field, None)
            if value is not None:  # the delta's counts are cumulative: the latest wins
                self._usage[field] = value

    def finish(self) -> list[StepEvent]:
        """Ends the answer: announces the last call if it waits, then `ModelFinished`.

        Raises:
            ProviderError: The stream ended without a message.
        """
        if not self._seen:
            raise error_from_body(
                "anthropic", None, request_id=self._request_id, what="no message in the stream"
            )
        events: list[StepEvent] = []
        self._announce(events)
        counts = self._usage
        usage = (
            None
            if all(v is None for v in counts.values())
            else read_usage(SimpleNamespace(**counts))
        )
        outcome = build_outcome(
            self._request,
            "".join(self._text) or None,
            self._calls,
            usage,
            self._stop_reason,
            self._rate_limits,
        )
        events.append(ModelFinished(outcome=outcome))
        return events
