"""`estimate_tokens`: what a request will cost in tokens, before it is sent.

A provider's token-per-minute limit counts a request's input and the output it may generate.
The estimate is the budget a `ProviderQuotaLayer` (or a `RateLimitLayer` with ``cost=``)
charges before the call; the usage the provider reports settles it afterwards, so the estimate
needs to be fast and close, not exact.

- Input: every message's text, its tool calls (names and argument text), and every tool spec
  (name, description, JSON Schema), plus the few tokens of framing each message costs.
- Output: the allowance the call may use (``output_tokens``, 1024 by default): pass the
  ``max_tokens`` your model is configured with, since providers count it before the answer
  exists.

Text is counted by ``tiktoken`` (``o200k_base``, the encoding of OpenAI's current models) when
that package is installed and its encoding loads: exact for OpenAI, close for others. Otherwise
by characters: one token per 4 bytes of UTF-8, the usual rule for English text (text in
scripts of more bytes per character counts more). tiktoken downloads its encoding file the first
time it is used on a machine; that first call blocks for the download, so call
`estimate_tokens` once at start-up where that matters (or pass ``count=`` a counter of your own).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from .messages import ChatRequest

__all__ = ["DEFAULT_OUTPUT_TOKENS", "count_text_tokens", "estimate_tokens"]

DEFAULT_OUTPUT_TOKENS = 1024
_PER_MESSAGE = 4  # role and separators, per message (OpenAI's documented framing is 3 or 4)
_PER_CALL = 4  # a tool call's id and framing
_PER_TOOL = 8  # a tool spec's framing
_REPLY = 3  # the tokens that prime the reply
_ENCODING = "o200k_base"


def _by_characters(text: str) -> int:
    return (len(text.encode("utf-8", "surrogatepass")) + 3) // 4


_counter: Callable[[str], int] | None = None  # chosen on first use: tiktoken or characters


def _load_counter() -> Callable[[str], int]:
    global _counter
    counter: Callable[[str], int] = _by_characters
    try:
        tiktoken: Any = importlib.import_module("tiktoken")
        encoding = tiktoken.get_encoding(_ENCODING)
    except Exception:  # not installed, or its encoding cannot be loaded (offline): characters
        pass
    else:
        encode = encoding.encode

        def counter(text: str) -> int:
            # special tokens in user text are counted as text, never refused
            return len(encode(text, disallowed_special=()))

    _counter = counter
    return counter


def count_text_tokens(text: str) -> int:
    """Counts the tokens of a text: by tiktoken when installed, else one per 4 UTF-8 bytes."""
    counter = _counter if _counter is not None else _load_counter()
    return counter(text)


def estimate_tokens(
    request: ChatRequest,
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    count: Callable[[str], int] | None = None,
) -> int:
    """Estimates the tokens one model call will cost: its input plus its output allowance.

    Use it (the default) as `ProviderQuotaLayer`'s ``estimate``, or as a `RateLimitLayer`'s
    ``cost``. To match a model configured with another ``max_tokens``:
    ``estimate=lambda request: estimate_tokens(request, output_tokens=512)``.

    Args:
        request: The call to estimate.
        output_tokens: The output allowance: the most tokens the model may generate.
        count: Counts the tokens of a text; default: tiktoken when installed, else characters
            (see the module's docstring).

    Returns:
        The estimate, in tokens (at least ``output_tokens``).

    Raises:
        ValueError: ``output_tokens`` is negative.
    """
    if output_tokens < 0:
        raise ValueError(f"output_tokens must be >= 0, got {output_tokens!r}")
    if count is None:
        count = _counter if _counter is not None else _load_counter()
    total = _REPLY + output_tokens
    for message in request.messages:
        total += _PER_MESSAGE
        if message.content:
            total += count(message.content)
        for call in message.tool_calls:
            arguments = call.raw_arguments
            if arguments is None:
                arguments = to_json(call.arguments).decode()
            total += _PER_CALL + count(call.name) + count(arguments)
    for spec in request.tools:
        total += _PER_TOOL + count(spec.name) + count(spec.description)
        total += count(to_json(spec.parameters).decode())
    return total
