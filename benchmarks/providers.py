"""What does a towerpy provider adapter add to a model call?

Compares, call by call in one run, against one local server (a subprocess answering fixed
bodies):

- **bare SDK**: ``await client.chat.completions.create(**kwargs)`` (or ``messages.create``)
  with the wire arguments built once beforehand, the answer left as the SDK's object;
- **towerpy**: ``await model(request)``: the same call through `OpenAIChatModel` /
  `AnthropicModel`, converting the `ChatRequest` to the wire format on the way in and the SDK's
  answer to a `StepOutcome` on the way out.

The conversation is a realistic agent step: a system prompt, 12 earlier turns with tool calls and
results, 5 tool specs, and an answer asking for 3 tools. Bare and towerpy calls alternate one by
one, so drift on a shared machine hits both; per round, the overhead is the ratio of the median
call times, and the figure reported is the median over rounds (with the lowest and highest
round). The conversion alone (in + out, no network) is timed too.

Run: ``python benchmarks/providers.py [--steps 300] [--rounds 15] [--backend asyncio|trio]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

from towerpy.llm import AnthropicModel, ChatRequest, Message, OpenAIChatModel, ToolCall
from towerpy.llm._anthropic_wire import to_outcome as anthropic_outcome
from towerpy.llm._openai_wire import to_outcome as openai_outcome
from towerpy.tools import ToolOutput, ToolSpec

OPENAI_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "bench",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me look these up.",
                "tool_calls": [
                    {
                        "id": f"call_{n}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps({"city": c})},
                    }
                    for n, c in enumerate(["Oslo", "Rome", "Lima"])
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 812, "completion_tokens": 64, "total_tokens": 876},
}
ANTHROPIC_BODY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "bench",
    "content": [
        {"type": "text", "text": "Let me look these up."},
        *(
            {"type": "tool_use", "id": f"toolu_{n}", "name": "get_weather", "input": {"city": c}}
            for n, c in enumerate(["Oslo", "Rome", "Lima"])
        ),
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 812, "output_tokens": 64},
}


def serve(port_out: Any) -> None:
    """The fixed-answer server, run in a subprocess so it does not share our GIL."""
    bodies = {
        "/v1/chat/completions": json.dumps(OPENAI_BODY).encode(),
        "/v1/messages": json.dumps(ANTHROPIC_BODY).encode(),
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave in separate writes

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            data = bodies[self.path]
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_port, file=port_out, flush=True)
    server.serve_forever()


def conversation() -> ChatRequest:
    specs = [
        ToolSpec(
            name=name,
            description=f"The {name} tool.",
            parameters={
                "type": "object",
                "properties": {"city": {"type": "string"}, "units": {"type": "string"}},
                "required": ["city"],
            },
        )
        for name in ["get_weather", "get_time", "search", "read_file", "write_file"]
    ]
    messages = [Message.system("You are a helpful assistant. " * 20), Message.user("Plan a trip.")]
    for turn in range(4):
        calls = [
            ToolCall(id=f"call_{turn}_{n}", name="search", arguments={"city": f"city {n}"})
            for n in range(2)
        ]
        messages.append(Message.assistant("Searching.", calls))
        messages.extend(
            Message.tool(ToolOutput(id=c.id, name=c.name, content={"hits": ["a" * 80] * 3}))
            for c in calls
        )
    messages.append(Message.user("And the weather?"))
    return ChatRequest(messages=messages, tools=specs)


async def run(kind: str, url: str, steps: int, rounds: int) -> dict[str, float]:
    request = conversation()
    if kind == "openai":
        model: Any = OpenAIChatModel("bench", base_url=url + "/v1", api_key="k")
        create = model.client.chat.completions.create
        to_outcome: Any = openai_outcome
    else:
        model = AnthropicModel("bench", base_url=url, api_key="k")
        create = model.client.messages.create
        to_outcome = anthropic_outcome
    kwargs = model.wire_request(request)  # built once: the bare call pays no conversion

    async def timed(fn: Any, arg: Any) -> float:
        start = time.perf_counter()
        await fn(**arg) if isinstance(arg, dict) else await fn(arg)
        return time.perf_counter() - start

    async with model:
        for _ in range(20):  # warm the connection pool and both code paths
            await create(**kwargs)
            await model(request)
        bare_times: list[float] = []
        tower_times: list[float] = []
        ratios: list[float] = []
        for _ in range(rounds):
            bare_round: list[float] = []
            tower_round: list[float] = []
            for i in range(steps):
                # alternate which goes first, so neither always runs on a warmer cache
                if i % 2:
                    bare_round.append(await timed(create, kwargs))
                    tower_round.append(await timed(model, request))
                else:
                    tower_round.append(await timed(model, request))
                    bare_round.append(await timed(create, kwargs))
            ratios.append(statistics.median(tower_round) / statistics.median(bare_round))
            bare_times += bare_round
            tower_times += tower_round
        answer = await create(**kwargs)
    # the conversion alone, no network: ChatRequest -> wire kwargs, SDK answer -> StepOutcome
    n = steps * 5
    start = time.perf_counter()
    for _ in range(n):
        model.wire_request(request)
        to_outcome(request, answer)
    conversion = (time.perf_counter() - start) / n
    return {
        "bare_us": statistics.median(bare_times) * 1e6,
        "towerpy_us": statistics.median(tower_times) * 1e6,
        "overhead_pct": (statistics.median(ratios) - 1) * 100,
        "overhead_min_pct": (min(ratios) - 1) * 100,
        "overhead_max_pct": (max(ratios) - 1) * 100,
        "conversion_us": conversion * 1e6,
        "conversion_pct": conversion / statistics.median(bare_times) * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="calls per timed batch")
    parser.add_argument("--rounds", type=int, default=15, help="alternating batches")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(sys.stdout)
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        print(f"provider adapters, {args.backend}, {args.rounds} rounds x {args.steps} steps")
        print(
            f"{'provider':<10} {'bare SDK':>10} {'towerpy':>10} {'overhead (min..max)':>24} "
            f"{'conversion':>11} {'conv/bare':>9}"
        )
        for kind in ["openai", "anthropic"]:
            r = anyio.run(run, kind, url, args.steps, args.rounds, backend=args.backend)
            spread = f"{r['overhead_min_pct']:+.1f}..{r['overhead_max_pct']:+.1f}"
            print(
                f"{kind:<10} {r['bare_us']:>8.0f}us {r['towerpy_us']:>8.0f}us "
                f"{r['overhead_pct']:>+8.1f}% ({spread:>13}) "
                f"{r['conversion_us']:>9.1f}us {r['conversion_pct']:>8.1f}%"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
