"""How much sooner are a model answer's tools done when each starts as its call completes?

A local simulator (a subprocess HTTP server) plays a model that writes at a realistic token
rate: a short preamble, then N tool calls, one token per chunk, through the official SDKs'
streaming (OpenAI chunks, Anthropic events) or, non-streamed, the whole body once the same
tokens have been "generated". The tools sleep for the time their arguments say (an API, a
query). Measured, on the real clock, from the request to the last tool result:

- **non-streamed**: ``await agent.run(prompt)``: the answer arrives whole, then the tools run;
- **streamed**: ``agent.run_stream(prompt, early_start=False)``: text arrives early, tools
  still start when the answer is over (the control: streaming alone changes nothing here);
- **early start**: ``agent.run_stream(prompt)``: each tool starts the moment its call is
  complete, while the model is still writing the next ones.

The ratio reported is non-streamed / early start (higher is better), the median over rounds,
next to the ideal times the scenario allows (generation time + the tools' critical path).

Run: ``python benchmarks/streaming.py [--rounds 3] [--rate 60] [--backend asyncio|trio]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

from towerpy.llm import Agent, AgentEvent, AnthropicModel, OpenAIChatModel, ToolFinished
from towerpy.tools import ToolRouter, tool

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Scenario:
    name: str
    preamble_tokens: int
    arguments_tokens: int  # per call
    tool_seconds: tuple[float, ...]  # one per call
    tool_limit: int = 5


SCENARIOS = [
    Scenario("mixed tools", 20, 25, (2.0, 0.5, 1.0, 0.5)),
    Scenario("equal tools, limit 2", 20, 25, (1.0,) * 5, tool_limit=2),
    Scenario("the issue's batch, x0.5", 10, 28, (2.0, 0.5, 0.5, 0.5, 0.5)),
]


# -- the simulator (runs in a subprocess: it must not share our GIL) -----------------------------


def arguments_text(scenario: Scenario, index: int) -> str:
    """A call's argument JSON, padded to the scenario's token count."""
    seconds = scenario.tool_seconds[index]
    base = {"query": "", "seconds": seconds}
    room = scenario.arguments_tokens * CHARS_PER_TOKEN - len(json.dumps(base))
    query = (f"weather and events in city {index} " * 20)[: max(room, 1)]
    return json.dumps({"query": query, "seconds": seconds})


def tokens(text: str) -> list[str]:
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def openai_chunks(scenario: Scenario) -> list[bytes]:
    """One chunk per token: the preamble, then each call (its first chunk is a token too)."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-sim",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "sim",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    pieces = [chunk({"content": t}) for t in tokens("Let me look this up. " * 20)][
        : scenario.preamble_tokens
    ]
    for index in range(len(scenario.tool_seconds)):
        first = {"index": index, "id": f"call_{index}", "type": "function"}
        first["function"] = {"name": "lookup", "arguments": ""}
        pieces.append(chunk({"tool_calls": [first]}))
        pieces.extend(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": t}}]})
            for t in tokens(arguments_text(scenario, index))
        )
    pieces.append(chunk({}, "tool_calls"))
    return pieces


def anthropic_events(scenario: Scenario) -> list[bytes]:
    """One event per token, as `openai_chunks`."""

    def event(body: dict[str, Any]) -> bytes:
        return f"event: {body['type']}\ndata: {json.dumps(body)}\n\n".encode()

    message = {
        "id": "msg_sim",
        "type": "message",
        "role": "assistant",
        "model": "sim",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 1},
    }
    head = [
        event({"type": "message_start", "message": message}),
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        ),
    ]
    pieces = [
        event(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
        )
        for t in tokens("Let me look this up. " * 20)
    ][: scenario.preamble_tokens]
    pieces[0] = head[0] + head[1] + pieces[0]
    pieces[-1] += event({"type": "content_block_stop", "index": 0})
    for index in range(len(scenario.tool_seconds)):
        block = index + 1
        use = {"type": "tool_use", "id": f"toolu_{index}", "name": "lookup", "input": {}}
        pieces.append(event({"type": "content_block_start", "index": block, "content_block": use}))
        pieces.extend(
            event(
                {
                    "type": "content_block_delta",
                    "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": t},
                }
            )
            for t in tokens(arguments_text(scenario, index))
        )
        pieces[-1] += event({"type": "content_block_stop", "index": block})
    pieces.append(
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            }
        )
        + event({"type": "message_stop"})
    )
    return pieces


def whole_body(kind: str, scenario: Scenario) -> dict[str, Any]:
    count = len(scenario.tool_seconds)
    if kind == "openai":
        calls = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": "lookup", "arguments": arguments_text(scenario, i)},
            }
            for i in range(count)
        ]
        return {
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "sim",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "...", "tool_calls": calls},
                    "finish_reason": "tool_calls",
                }
            ],
        }
    uses = [
        {
            "type": "tool_use",
            "id": f"toolu_{i}",
            "name": "lookup",
            "input": json.loads(arguments_text(scenario, i)),
        }
        for i in range(count)
    ]
    return {
        "id": "msg_sim",
        "type": "message",
        "role": "assistant",
        "model": "sim",
        "content": [{"type": "text", "text": "..."}, *uses],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 200},
    }


def final_body(kind: str, stream: bool) -> tuple[str, bytes]:
    if kind == "openai":
        if stream:
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "sim",
                "choices": [{"index": 0, "delta": {"content": "Done."}, "finish_reason": "stop"}],
            }
            return "text/event-stream", b"data: " + json.dumps(chunk).encode() + b"\n\n"
        body = {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "sim",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Done."},
                    "finish_reason": "stop",
                }
            ],
        }
        return "application/json", json.dumps(body).encode()
    message = {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "sim",
        "content": [{"type": "text", "text": "Done."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    if not stream:
        return "application/json", json.dumps(message).encode()
    start = dict(message, content=[], stop_reason=None)
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Done."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 1},
        },
        {"type": "message_stop"},
    ]
    data = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    return "text/event-stream", data


def serve(rate: float) -> None:
    """The simulator: ``/<scenario index>/v1/...`` answers that scenario at ``rate`` tokens/s."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            scenario = SCENARIOS[int(self.path.split("/")[1])]
            kind = "openai" if self.path.endswith("/chat/completions") else "anthropic"
            stream = bool(body.get("stream"))
            answered = "tool" in json.dumps(body["messages"][-1])  # tool results: say done
            if answered:
                content_type, data = final_body(kind, stream)
                self._send(content_type, [data] if stream else None, data)
                return
            pieces = openai_chunks(scenario) if kind == "openai" else anthropic_events(scenario)
            if stream:
                self._send("text/event-stream", pieces, b"")
                return
            time.sleep(len(pieces) / rate)  # the model generates every token first
            self._send("application/json", None, json.dumps(whole_body(kind, scenario)).encode())

        def _send(self, content_type: str, pieces: list[bytes] | None, data: bytes) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            if pieces is None:
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            start = time.perf_counter()
            for n, piece in enumerate(pieces, 1):
                if len(pieces) > 1:  # one token every 1/rate s, on a steady schedule
                    time.sleep(max(0.0, start + n / rate - time.perf_counter()))
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            if pieces[-1].startswith(b"data: ") and b"chat.completion.chunk" in pieces[-1]:
                done = b"data: [DONE]\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(done), done))
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_port, flush=True)
    server.serve_forever()


# -- the measurement ----------------------------------------------------------------------------

ended: list[float] = []


@tool
async def lookup(query: str, seconds: float) -> str:
    """Looks something up (a remote API): takes ``seconds``."""
    await anyio.sleep(seconds)
    ended.append(time.perf_counter())
    return f"found {len(query)} things"


def ideal(scenario: Scenario, rate: float, kind: str) -> tuple[float, float]:
    """(non-streamed, early start) times the scenario allows, network and CPU aside."""
    sim = openai_chunks(scenario) if kind == "openai" else anthropic_events(scenario)
    generation = len(sim) / rate
    per_call = 1 + len(tokens(arguments_text(scenario, 0)))
    # a call is complete with the piece after its last token (the next call, or the finish)
    done = [
        (scenario.preamble_tokens + per_call * (k + 1) + 1) / rate
        for k in range(len(scenario.tool_seconds))
    ]
    free = [0.0] * scenario.tool_limit
    last = 0.0
    for complete, seconds in zip(done, scenario.tool_seconds, strict=True):
        slot = min(range(len(free)), key=free.__getitem__)
        start = max(complete, free[slot])
        free[slot] = start + seconds
        last = max(last, free[slot])
    free = [generation] * scenario.tool_limit
    plain = 0.0
    for seconds in scenario.tool_seconds:
        slot = min(range(len(free)), key=free.__getitem__)
        free[slot] += seconds
        plain = max(plain, free[slot])
    return plain, last


async def once(kind: str, url: str, index: int, mode: str) -> float:
    scenario = SCENARIOS[index]
    if kind == "openai":
        model: Any = OpenAIChatModel("sim", base_url=f"{url}/{index}/v1", api_key="k")
    else:
        model = AnthropicModel("sim", base_url=f"{url}/{index}", api_key="k")
    agent = Agent(model, tools=ToolRouter([lookup]), tool_limit=scenario.tool_limit)
    ended.clear()
    async with model:
        start = time.perf_counter()
        if mode == "non-streamed":
            await agent.run("look it up")
        else:
            async with agent.run_stream("look it up", early_start=mode == "early start") as run:
                event: AgentEvent
                async for event in run:
                    if isinstance(event, ToolFinished):
                        assert not event.output.is_error, event.output
    assert len(ended) == len(scenario.tool_seconds)
    return max(ended) - start


async def measure(kind: str, url: str, rounds: int) -> list[dict[str, Any]]:
    rows = []
    modes = ["non-streamed", "streamed", "early start"]
    for index, scenario in enumerate(SCENARIOS):
        await once(kind, url, index, "early start")  # warm the connection and code paths
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(rounds):
            for mode in modes[round_ % 3 :] + modes[: round_ % 3]:  # rotate who goes first
                results[mode].append(await once(kind, url, index, mode))
        rows.append(
            {
                "scenario": scenario.name,
                **{mode: statistics.median(times) for mode, times in results.items()},
                "ratios": [
                    plain / early
                    for plain, early in zip(
                        results["non-streamed"], results["early start"], strict=True
                    )
                ],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=60.0, help="tokens per second")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.rate)
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--rate", str(args.rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        print(
            f"streaming with early start, {args.backend}, {args.rate:g} tokens/s, "
            f"{args.rounds} rounds (seconds from the request to the last tool result)"
        )
        print(
            f"{'provider':<10} {'scenario':<24} {'non-streamed':>12} {'streamed':>9} "
            f"{'early start':>11} {'ratio (min..max)':>19} {'ideal':>14}"
        )
        for kind in ["openai", "anthropic"]:
            rows = anyio.run(measure, kind, url, args.rounds, backend=args.backend)
            for index, row in enumerate(rows):
                plain, early = ideal(SCENARIOS[index], args.rate, kind)
                ratios = row["ratios"]
                spread = f"{min(ratios):.2f}..{max(ratios):.2f}"
                print(
                    f"{kind:<10} {row['scenario']:<24} {row['non-streamed']:>11.2f}s "
                    f"{row['streamed']:>8.2f}s {row['early start']:>10.2f}s "
                    f"{statistics.median(ratios):>6.2f}x ({spread:>10}) "
                    f"{plain:>5.2f}s/{early:.2f}s"
                )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
