# ruff: noqa: E501 - the recorded bodies are kept as the servers send them, one event a line
"""Streamed answers in each provider's wire format: recorded bodies, and builders with timings.

The recorded bodies are server-sent-event bodies in the shape the APIs send (ids, fingerprints,
``ping`` events, an empty first argument piece, the usage chunk after the finish): they are
parsed by the official SDKs exactly as a real answer would be.
"""

from __future__ import annotations

import json
from typing import Any

from .fake_provider import Reply

# -- recorded: OpenAI Chat Completions, two parallel tool calls after a short text -------------

OPENAI_RECORDED = b"""\
data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":"Checking"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":" both."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_OsloA1b2","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"ci"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\\": \\"Os"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"lo\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_LimaC3d4","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\\"city\\": "}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\\"Lima\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-BQx3","object":"chat.completion.chunk","created":1745000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[],"usage":{"prompt_tokens":84,"completion_tokens":51,"total_tokens":135,"prompt_tokens_details":{"cached_tokens":64,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"""

# -- recorded: Anthropic Messages, a text block and two tool_use blocks ------------------------

ANTHROPIC_RECORDED = b"""\
event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":128,"output_tokens":2,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" both."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Os"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"lo\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01P2y2gK45rBnl3uOUsO8Vq7","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \\"Lima\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""

RECORDED_TEXT = "Checking both."
RECORDED_CALLS = {
    "openai": [("call_OsloA1b2", {"city": "Oslo"}), ("call_LimaC3d4", {"city": "Lima"})],
    "anthropic": [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", {"city": "Oslo"}),
        ("toolu_01P2y2gK45rBnl3uOUsO8Vq7", {"city": "Lima"}),
    ],
}


def split_events(body: bytes) -> list[bytes]:
    """The events of a recorded body, each with its blank line."""
    return [part + b"\n\n" for part in body.split(b"\n\n") if part.strip()]


# -- builders: the same answer in both formats, each piece at its time ---------------------------

Piece = tuple[float, bytes]


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _openai_usage(usage: tuple[int, int]) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _anthropic_event(body: dict[str, Any]) -> bytes:
    return f"event: {body['type']}\ndata: {json.dumps(body)}\n\n".encode()


def openai_pieces(
    text: list[tuple[float, str]],
    calls: list[tuple[float, str, str, list[tuple[float, str]]]],
    *,
    end: float = 0.0,
    usage: tuple[int, int] = (10, 5),
    finish_reason: str | None = None,
) -> list[Piece]:
    """Chunks of one answer: text pieces, then each call ``(delay, id, name, argument pieces)``.

    Each delay counts from the previous piece; ``end`` is the delay of the finish chunk, which
    completes the last call. A call is complete when the next call's first chunk arrives.
    """
    pieces: list[Piece] = [(0.0, _openai_chunk({"role": "assistant", "content": ""}))]
    pieces.extend((delay, _openai_chunk({"content": piece})) for delay, piece in text)
    for index, (delay, cid, name, arguments) in enumerate(calls):
        first = {"index": index, "id": cid, "type": "function"}
        first["function"] = {"name": name, "arguments": ""}
        pieces.append((delay, _openai_chunk({"tool_calls": [first]})))
        for piece_delay, piece in arguments:
            rest = {"index": index, "function": {"arguments": piece}}
            pieces.append((piece_delay, _openai_chunk({"tool_calls": [rest]})))
    finish = finish_reason or ("tool_calls" if calls else "stop")
    pieces.append((end, _openai_chunk({}, finish)))
    pieces.append((0.0, _openai_usage(usage)))
    pieces.append((0.0, b"data: [DONE]\n\n"))
    return pieces


def anthropic_pieces(
    text: list[tuple[float, str]],
    calls: list[tuple[float, str, str, list[tuple[float, str]]]],
    *,
    end: float = 0.0,
    usage: tuple[int, int] = (10, 5),
    stop_reason: str | None = None,
) -> list[Piece]:
    """Events of one answer, shaped as `openai_pieces`' arguments.

    A call's block stops with its last argument piece; it is announced complete on the next
    event (the next block's start, or the message delta after ``end``).
    """
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "fake-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": 1},
    }
    pieces: list[Piece] = [(0.0, _anthropic_event({"type": "message_start", "message": message}))]
    block = 0
    if text:
        start = {"type": "content_block_start", "index": 0}
        start["content_block"] = {"type": "text", "text": ""}
        pieces.append((0.0, _anthropic_event(start)))
        for delay, piece in text:
            delta = {"type": "text_delta", "text": piece}
            event = {"type": "content_block_delta", "index": 0, "delta": delta}
            pieces.append((delay, _anthropic_event(event)))
        pieces.append((0.0, _anthropic_event({"type": "content_block_stop", "index": 0})))
        block = 1
    for delay, cid, name, arguments in calls:
        start = {"type": "content_block_start", "index": block}
        start["content_block"] = {"type": "tool_use", "id": cid, "name": name, "input": {}}
        pieces.append((delay, _anthropic_event(start)))
        for piece_delay, piece in arguments:
            delta = {"type": "input_json_delta", "partial_json": piece}
            event = {"type": "content_block_delta", "index": block, "delta": delta}
            pieces.append((piece_delay, _anthropic_event(event)))
        pieces.append((0.0, _anthropic_event({"type": "content_block_stop", "index": block})))
        block += 1
    stop = stop_reason or ("tool_use" if calls else "end_turn")
    delta_event = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": usage[1]},
    }
    pieces.append((end, _anthropic_event(delta_event)))
    pieces.append((0.0, _anthropic_event({"type": "message_stop"})))
    return pieces


def pieces_for(
    provider: str,
    text: list[tuple[float, str]],
    calls: list[tuple[float, str, str, list[tuple[float, str]]]],
    **options: Any,
) -> list[Piece]:
    """`openai_pieces` or `anthropic_pieces`, by provider name."""
    if provider == "openai":
        return openai_pieces(text, calls, **options)
    return anthropic_pieces(text, calls, **options)


def streamed(pieces: list[Piece], *, cut: bool = False, **headers: str) -> Reply:
    """A reply that streams ``pieces`` as server-sent events."""
    return Reply(chunks=tuple(pieces), cut=cut, headers=dict(headers))


def recorded(provider: str) -> Reply:
    """The recorded body of ``provider``, streamed at once."""
    body = OPENAI_RECORDED if provider == "openai" else ANTHROPIC_RECORDED
    return streamed([(0.0, event) for event in split_events(body)])
