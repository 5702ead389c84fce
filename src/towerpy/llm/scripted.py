"""ScriptedModel: a step service that answers from a script, for tests, demos and offline runs."""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias, final

import anyio
from typing_extensions import override

from .._callables import callable_name
from .._service import Service
from .._validate import check_seconds
from ..errors import ScriptExhausted
from .messages import ChatRequest, Message, StepOutcome, Usage

__all__ = ["ScriptEntry", "ScriptedModel"]

ScriptEntry: TypeAlias = Message | Callable[[ChatRequest], Message | Awaitable[Message]]
"""One answer of a script: an assistant message, or a function of the request that makes one."""


@final
class ScriptedModel(Service[ChatRequest, StepOutcome], direct_call=True):
    """A step service that answers from a script, one entry per call: no network, deterministic.

    Each call takes the next entry, in the order the calls arrive: an assistant `Message`
    (``Message.assistant(...)``), or a function (sync or async) of the `ChatRequest` that returns
    one, for answers that depend on what the tools said. The outcome's ``messages`` are the
    request's plus the answer; ``tool_calls`` are the answer's tool calls; ``done`` is True when
    it asks for none. ``usage`` is an estimate (four characters to a token), so token-based rate
    limits can be tried offline.

    ``ready()`` returns at once. ``call()`` waits ``latency`` seconds (virtual time in tests),
    then answers. Calling it past the end of the script raises `ScriptExhausted`.

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
            if isinstance(entry, Message):
                if entry.role != "assistant":
                    raise ValueError(
                        f"script entry {index} is a {entry.role!r} message; a model answers with "
                        f"assistant messages: use Message.assistant(...)"
                    )
            elif not callable(entry):
                raise TypeError(
                    f"script entry {index} must be a Message or a function of the request, "
                    f"got {type(entry).__name__}"
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

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        index = len(self.requests)
        if index >= len(self._script):
            raise ScriptExhausted(
                f"ScriptedModel was called {index + 1} times but its script has only "
                f"{len(self._script)} entries; add answers to the script, or check why the agent "
                f"asks again (a tool error the script does not expect?)"
            )
        self.requests.append(request)  # before waiting: concurrent calls take entries in order
        latency = self._latency(request) if callable(self._latency) else self._latency
        if latency:
            await anyio.sleep(latency)
        answer = await self._answer(self._script[index], request, index)
        return StepOutcome(
            messages=[*request.messages, answer],
            tool_calls=[call.to_invocation() for call in answer.tool_calls],
            done=not answer.tool_calls,
            usage=_estimate(request, answer),
            finish_reason="tool_calls" if answer.tool_calls else "stop",
        )

    @staticmethod
    async def _answer(entry: ScriptEntry, request: ChatRequest, index: int) -> Message:
        if isinstance(entry, Message):
            return entry
        made = entry(request)
        if inspect.isawaitable(made):
            made = await made
        if not isinstance(made, Message) or made.role != "assistant":
            raise TypeError(
                f"script entry {index} ({callable_name(entry)}) must return an assistant "
                f"Message, got {made!r}"
            )
        return made

    def __repr__(self) -> str:
        return f"ScriptedModel(entries={len(self._script)}, remaining={self.remaining})"


def _estimate(request: ChatRequest, answer: Message) -> Usage:
    def size(message: Message) -> int:
        calls = sum(len(call.name) + len(str(call.arguments)) for call in message.tool_calls)
        return len(message.content or "") + calls

    prompt = sum(size(message) for message in request.messages)
    return Usage(input_tokens=math.ceil(prompt / 4), output_tokens=math.ceil(size(answer) / 4))
