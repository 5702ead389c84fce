"""ScriptedModel: a step service that answers from a script, for tests, demos and offline runs."""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import TypeAlias, final

import anyio
from typing_extensions import override

from .._callables import callable_name
from .._service import Service
from .._validate import check_instance, check_seconds
from ..errors import ScriptExhausted
from .events import (
    ModelFinished,
    StepEvent,
    StepStream,
    TextDelta,
    ToolCallComplete,
    ToolCallStarted,
)
from .messages import ChatRequest, Message, StepOutcome, ToolCall, Usage

__all__ = ["ScriptEntry", "ScriptedModel", "Streamed"]


@final
class Streamed:
    """A scripted answer that arrives piece by piece, with delays: a stream to script.

    Each piece is a ``(delay, piece)`` pair: ``delay`` seconds after the previous piece (or,
    for the first, after the model's ``latency``), the piece arrives. A ``str`` is a piece of
    text (a `TextDelta`); a `ToolCall` is a call the model begins writing when its delay
    begins (`ToolCallStarted`) and completes when it ends (`ToolCallComplete`). The answer is
    the assistant message with the text joined and the calls in order; ``call()`` returns it
    after the whole duration, as a non-streamed model would.

    Args:
        pieces: The ``(delay, piece)`` pairs, in order.

    Raises:
        TypeError: A pair is not ``(seconds, str | ToolCall)``.
        ValueError: A delay is negative or not finite.

    Attributes:
        pieces: The pairs, as a tuple.
        message: The whole answer.
        duration: The sum of the delays.
    """

    __slots__ = ("duration", "message", "pieces")

    def __init__(self, pieces: Iterable[tuple[float, str | ToolCall]]) -> None:
        checked: list[tuple[float, str | ToolCall]] = []
        for index, pair in enumerate(pieces):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError(
                    f"piece {index} must be a (delay, str | ToolCall) pair, got {pair!r}"
                )
            delay, piece = pair
            seconds = check_seconds(f"piece {index}: the delay", delay, finite=True)
            check_instance(f"piece {index}", piece, (str, ToolCall), "text (str) or a ToolCall")
            checked.append((seconds, piece))
        self.pieces = tuple(checked)
        text = "".join(piece for _, piece in checked if isinstance(piece, str))
        calls = [piece for _, piece in checked if isinstance(piece, ToolCall)]
        self.message = Message.assistant(text or None, calls)
        self.duration = math.fsum(delay for delay, _ in checked)

    def __repr__(self) -> str:
        return f"Streamed({list(self.pieces)!r})"


ScriptEntry: TypeAlias = (
    Message | Streamed | Callable[[ChatRequest], Message | Streamed | Awaitable[Message | Streamed]]
)
"""One answer of a script: an assistant message, a `Streamed` answer, or a function of the
request that makes one."""


@final
class ScriptedModel(Service[ChatRequest, StepOutcome], direct_call=True):
    """A step service that answers from a script, one entry per call: no network, deterministic.

    Each call takes the next entry, in the order the calls arrive: an assistant `Message`
    (``Message.assistant(...)``), a `Streamed` answer (pieces with delays), or a function (sync
    or async) of the `ChatRequest` that returns one, for answers that depend on what the tools
    said. The outcome's ``messages`` are the request's plus the answer; ``tool_calls`` are the
    answer's tool calls; ``done`` is True when it asks for none. ``usage`` is an estimate (four
    characters to a token), so token-based rate limits can be tried offline.

    ``ready()`` returns at once. ``call()`` waits ``latency`` seconds (virtual time in tests),
    and a `Streamed` answer's duration, then answers. ``stream(request)`` answers the same
    entry as a `StepStream`: after ``latency``, a `Streamed` answer's pieces at their times, a
    message's text and calls at once, then `ModelFinished`. Calling either past the end of the
    script raises `ScriptExhausted`.

    Args:
        script: The answers, in order.
        latency: Seconds each call takes, or a function of the request giving them.

    Raises:
        TypeError: An entry is neither a message nor a function, or ``latency`` is neither a
            number nor a function.
        ValueError: A message is not an assistant message, or ``latency`` is negative or NaN.

    Attributes:
        requests: Every request received so far, in order.
    """

    __slots__ = ("_latency", "_script", "requests")

    def __init__(
        self,
        script: Sequence[ScriptEntry],
        *,
        latency: float | Callable[[ChatRequest], float] = 0.0,
    ) -> None:
        entries = list(script)
        for index, entry in enumerate(entries):
            if isinstance(entry, Streamed):
                continue
            if isinstance(entry, Message):
                if entry.role != "assistant":
                    raise ValueError(
                        f"script entry {index} is a {entry.role!r} message; a model answers with "
                        f"assistant messages: use Message.assistant(...)"
                    )
            elif not callable(entry):
                raise TypeError(
                    f"script entry {index} must be a Message, a Streamed answer or a function of "
                    f"the request, got {type(entry).__name__}"
                )
        if not callable(latency):
            check_seconds("latency", latency)
        self._script = entries
        self._latency = latency
        self.requests: list[ChatRequest] = []

    @property
    def remaining(self) -> int:
        """How many entries are left."""
        return len(self._script) - len(self.requests)

    def _take(self, request: ChatRequest) -> int:
        index = len(self.requests)
        if index >= len(self._script):
            raise ScriptExhausted(
                f"ScriptedModel was called {index + 1} times but its script has only "
                f"{len(self._script)} entries; add answers to the script, or check why the agent "
                f"asks again (a tool error the script does not expect?)"
            )
        self.requests.append(request)  # before waiting: concurrent calls take entries in order
        return index

    async def _wait(self, request: ChatRequest) -> None:
        latency = self._latency(request) if callable(self._latency) else self._latency
        if latency:
            await anyio.sleep(latency)

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        index = self._take(request)
        await self._wait(request)
        answer = await self._answer(self._script[index], request, index)
        if isinstance(answer, Streamed):
            if answer.duration:
                await anyio.sleep(answer.duration)
            answer = answer.message
        return _outcome(request, answer)

    def stream(self, request: ChatRequest) -> StepStream:
        """Answers the next entry as a stream of events (see the class docstring)."""
        return StepStream(self._stream(request))

    async def _stream(self, request: ChatRequest) -> AsyncGenerator[StepEvent, None]:
        index = self._take(request)
        await self._wait(request)
        answer = await self._answer(self._script[index], request, index)
        if isinstance(answer, Message):
            if answer.content:
                yield TextDelta(text=answer.content)
            for position, call in enumerate(answer.tool_calls):
                yield ToolCallStarted(index=position, id=call.id, name=call.name)
                yield ToolCallComplete(index=position, call=call)
            yield ModelFinished(outcome=_outcome(request, answer))
            return
        position = 0
        for delay, piece in answer.pieces:
            if isinstance(piece, str):
                if delay:
                    await anyio.sleep(delay)
                yield TextDelta(text=piece)
                continue
            yield ToolCallStarted(index=position, id=piece.id, name=piece.name)
            if delay:
                await anyio.sleep(delay)
            yield ToolCallComplete(index=position, call=piece)
            position += 1
        yield ModelFinished(outcome=_outcome(request, answer.message))

    @staticmethod
    async def _answer(entry: ScriptEntry, request: ChatRequest, index: int) -> Message | Streamed:
        if isinstance(entry, Message | Streamed):
            return entry
        made = entry(request)
        if inspect.isawaitable(made):
            made = await made
        if isinstance(made, Streamed):
            return made
        if not isinstance(made, Message) or made.role != "assistant":
            raise TypeError(
                f"script entry {index} ({callable_name(entry)}) must return an assistant "
                f"Message or a Streamed answer, got {made!r}"
            )
        return made

    def __repr__(self) -> str:
        return f"ScriptedModel(entries={len(self._script)}, remaining={self.remaining})"


def _outcome(request: ChatRequest, answer: Message) -> StepOutcome:
    return StepOutcome(
        messages=[*request.messages, answer],
        tool_calls=[call.to_invocation() for call in answer.tool_calls],
        done=not answer.tool_calls,
        usage=_estimate(request, answer),
        finish_reason="tool_calls" if answer.tool_calls else "stop",
    )


def _estimate(request: ChatRequest, answer: Message) -> Usage:
    def size(message: Message) -> int:
        calls = sum(len(call.name) + len(str(call.arguments)) for call in message.tool_calls)
        return len(message.content or "") + calls

    prompt = sum(size(message) for message in request.messages)
    return Usage(input_tokens=math.ceil(prompt / 4), output_tokens=math.ceil(size(answer) / 4))
