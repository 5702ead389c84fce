"""A model provider that enforces a quota, as the real ones do: for tests and benchmarks.

`Simulator` speaks the OpenAI Chat Completions and the Anthropic Messages wire formats and
enforces a requests-per-period and a tokens-per-period quota with continuous buckets of its own
(they refill at limit/period, hold at most the limit, start full). Like Anthropic's output
limit, a request is charged its input tokens plus its whole ``max_tokens`` when it arrives,
and what it did not generate is given back when it completes. A request that does not fit is
answered 429 with ``retry-after`` (and ``retry-after-ms`` in OpenAI's format): the seconds until
it would fit; as OpenAI documents ("unsuccessful requests contribute to your per-minute limit"),
the refused request still counts against the request budget (which it may empty, never put in
debt), so clients that retry on their own keep the key saturated. Every answer carries the
provider's rate-limit headers (OpenAI's ``x-ratelimit-*`` with Go durations, Anthropic's
``anthropic-ratelimit-*`` with RFC 3339 instants), computed when the answer is sent.

Input tokens are counted as one per 3.6 characters (a tokenizer other than the client's
estimate, so that estimates are off as they are in life). A request's output is the ``out=N``
written in its last user message (default 50), at most its ``max_tokens``; generating it takes
``base_latency + output * per_token`` seconds.

It runs three ways, with the same accounting:

- `Simulator.transport`: an httpx ``MockTransport`` handler, in process, on the anyio clock:
  tests in virtual time;
- `serve_in_thread`: an HTTP server on 127.0.0.1 in a thread (real clock, real sockets);
- ``python tests/llm/provider_sim.py REQUESTS TOKENS PER``: the same server in a process of
  its own (the benchmark), which prints its port; ``GET /stats`` returns its statistics.

A request for the model ``"warm-up"`` is answered at once and counted nowhere: a test warms a
client up with it (the OpenAI SDK's first request on a client looks the platform up in a worker
thread, during which a virtual clock jumps ahead).

Only the standard library is needed by the server (httpx only for the in-process transport).
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

CHARS_PER_TOKEN = 3.6
DEFAULT_OUTPUT = 50
DEFAULT_MAX_TOKENS = 1024  # charged when a request sets no max_tokens
WARM_UP = "warm-up"  # a model whose requests are answered at once, counted nowhere
_OUT = re.compile(r"out=(\d+)")


@dataclass
class Stats:
    """What the simulator saw: requests, 429s, and the tokens it reported as used."""

    requests: int = 0
    rate_limited: int = 0
    ok: int = 0
    tokens_reported: int = 0
    first: float | None = None  # the clock at the first request
    last: float | None = None  # the clock at the last answer


class _Bucket:
    """A continuous bucket: ``limit`` per ``per`` seconds, holding at most ``limit``."""

    def __init__(self, limit: float, per: float, now: float) -> None:
        self.limit = limit
        self.rate = limit / per
        self.level = limit
        self.at = now

    def refill(self, now: float) -> float:
        self.level = min(self.limit, self.level + (now - self.at) * self.rate)
        self.at = now
        return self.level

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is there (after `refill`)."""
        return max(0.0, (amount - self.level) / self.rate)

    def full_in(self) -> float:
        return max(0.0, (self.limit - self.level) / self.rate)


@dataclass
class Pending:
    """An admitted request, being generated."""

    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    unused: int  # charged max_tokens that generation will not use: given back at the end
    latency: float


@dataclass
class Answer:
    """An HTTP answer: status, headers, JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Simulator:
    """A provider with a requests+tokens quota (see the module docstring).

    Args:
        requests: Requests per ``per`` seconds.
        tokens: Tokens per ``per`` seconds (input plus output).
        per: The period of both limits; the headers report the limits per this period.
        base_latency: Seconds every answer takes.
        per_token: Seconds per generated token.
        clock: Where time is read (``time.monotonic``, or ``anyio.current_time``).
        wall: Where wall-clock time is read, for Anthropic's reset instants.
    """

    def __init__(
        self,
        requests: float = 20.0,
        tokens: float = 20_000.0,
        per: float = 1.0,
        *,
        base_latency: float = 0.05,
        per_token: float = 0.0002,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        now = clock()
        self.requests = _Bucket(requests, per, now)
        self.tokens = _Bucket(tokens, per, now)
        self.base_latency = base_latency
        self.per_token = per_token
        self.stats = Stats()
        self.log: list[tuple[float, int]] = []  # (time, status) of every request
        self._lock = threading.Lock()

    # -- accounting --------------------------------------------------------------------------

    def start(self, path: str, body: Any) -> Pending | Answer:
        """Admits a request (charging the quota) or answers 429; unknown paths get a 404."""
        provider = _provider(path)
        if provider is None or not isinstance(body, dict):
            return Answer(404, {"error": {"message": f"no such endpoint {path}", "type": "x"}})
        input_tokens = _input_tokens(body)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        output = min(max_tokens, _wanted_output(body))
        if body.get("model") == WARM_UP:
            return Pending(provider, WARM_UP, 1, 1, 0, 0.0)
        charge = input_tokens + max_tokens
        with self._lock:
            now = self._clock()
            stats = self.stats
            stats.requests += 1
            if stats.first is None:
                stats.first = now
            self.requests.refill(now)
            self.tokens.refill(now)
            wait = max(self.requests.wait_for(1.0), self.tokens.wait_for(charge))
            if charge > self.tokens.limit:
                wait = math.inf
            if wait > 0:
                stats.rate_limited += 1
                self.log.append((now, 429))
                # refused, it counts all the same: the wait it is told includes itself
                requests = self.requests
                requests.level = max(0.0, requests.level - 1.0)
                wait = max(wait, requests.wait_for(1.0))
                return self._rate_limited(provider, wait)
            self.requests.level -= 1.0
            self.tokens.level -= charge
            self.log.append((now, 200))
        return Pending(
            provider,
            str(body.get("model") or "sim"),
            input_tokens,
            output,
            max_tokens - output,
            self.base_latency + output * self.per_token,
        )

    def finish(self, pending: Pending) -> Answer:
        """Completes a request: gives back what it did not generate, answers with headers."""
        if pending.model == WARM_UP:
            body = openai_body(pending) if pending.provider == "openai" else anthropic_body(pending)
            return Answer(200, body)
        with self._lock:
            now = self._clock()
            self.tokens.refill(now)
            self.tokens.level = min(self.tokens.limit, self.tokens.level + pending.unused)
            self.requests.refill(now)
            stats = self.stats
            stats.ok += 1
            stats.tokens_reported += pending.input_tokens + pending.output_tokens
            stats.last = now
            headers = self._headers(pending.provider)
        body = openai_body(pending) if pending.provider == "openai" else anthropic_body(pending)
        return Answer(200, body, headers)

    def _rate_limited(self, provider: str, wait: float) -> Answer:
        headers = self._headers(provider)
        if math.isfinite(wait):
            headers["retry-after"] = f"{wait:.3f}"
            if provider == "openai":
                headers["retry-after-ms"] = f"{wait * 1000:.0f}"
        message = "rate limit exceeded: too many requests or tokens"
        body: dict[str, Any]
        if provider == "openai":
            body = {
                "error": {"message": message, "type": "requests", "code": "rate_limit_exceeded"}
            }
        else:
            body = {"type": "error", "error": {"type": "rate_limit_error", "message": message}}
        return Answer(429, body, headers)

    def _headers(self, provider: str) -> dict[str, str]:
        buckets = {"requests": self.requests, "tokens": self.tokens}
        headers: dict[str, str] = {}
        if provider == "openai":
            for kind, bucket in buckets.items():
                headers[f"x-ratelimit-limit-{kind}"] = f"{bucket.limit:.0f}"
                headers[f"x-ratelimit-remaining-{kind}"] = f"{max(0.0, bucket.level):.0f}"
                headers[f"x-ratelimit-reset-{kind}"] = go_duration(bucket.full_in())
        else:
            wall = self._wall()
            for kind, bucket in buckets.items():
                reset = datetime.fromtimestamp(wall + bucket.full_in(), UTC)
                headers[f"anthropic-ratelimit-{kind}-limit"] = f"{bucket.limit:.0f}"
                headers[f"anthropic-ratelimit-{kind}-remaining"] = f"{max(0.0, bucket.level):.0f}"
                headers[f"anthropic-ratelimit-{kind}-reset"] = reset.isoformat().replace(
                    "+00:00", "Z"
                )
        return headers

    # -- transports --------------------------------------------------------------------------

    def transport(self, hx: ModuleType) -> Any:
        """An httpx ``MockTransport`` answering in process, waiting on the anyio clock."""
        import anyio

        async def handle(request: Any) -> Any:
            body = json.loads(request.content) if request.content else None
            result = self.start(request.url.path, body)
            if isinstance(result, Pending):
                await anyio.sleep(result.latency)
                result = self.finish(result)
            headers = {"content-type": "application/json", **result.headers}
            return hx.Response(result.status, headers=headers, content=json.dumps(result.body))

        return hx.MockTransport(handle)


def _provider(path: str) -> str | None:
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/messages"):
        return "anthropic"
    return None


def _texts(body: dict[str, Any]) -> Iterator[str]:
    system = body.get("system")
    if isinstance(system, str):
        yield system
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    text = block.get("text") or block.get("content")
                    if isinstance(text, str):
                        yield text


def _input_tokens(body: dict[str, Any]) -> int:
    messages = len(body.get("messages") or [])
    characters = sum(len(text) for text in _texts(body))
    return math.ceil(characters / CHARS_PER_TOKEN) + 4 * messages


def _wanted_output(body: dict[str, Any]) -> int:
    last = ""
    for message in body.get("messages") or []:
        if message.get("role") == "user":
            texts = list(_texts({"messages": [message]}))
            last = texts[-1] if texts else ""
    match = _OUT.search(last)
    return int(match.group(1)) if match else DEFAULT_OUTPUT


def go_duration(seconds: float) -> str:
    """Writes a duration as OpenAI does: ``6m0s``, ``1.5s``, ``20ms``."""
    if seconds < 1.0:
        return f"{seconds * 1000:.0f}ms"
    minutes, rest = divmod(seconds, 60.0)
    if minutes:
        return f"{minutes:.0f}m{rest:.3g}s"
    return f"{rest:.3g}s"


def openai_body(pending: Pending) -> dict[str, Any]:
    """A complete ``chat.completion``: the SDKs validate strictly in the tests."""
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": pending.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "done", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": pending.input_tokens,
            "completion_tokens": pending.output_tokens,
            "total_tokens": pending.input_tokens + pending.output_tokens,
        },
    }


def anthropic_body(pending: Pending) -> dict[str, Any]:
    """A complete Anthropic ``message``."""
    return {
        "id": "msg_sim",
        "type": "message",
        "role": "assistant",
        "model": pending.model,
        "content": [{"type": "text", "text": "done"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": pending.input_tokens, "output_tokens": pending.output_tokens},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 50 agents connect at once; the default backlog of 5 resets them


def make_server(simulator: Simulator, port: int = 0) -> _Server:
    """An HTTP server on 127.0.0.1 answering from ``simulator`` (``GET /stats`` reads it)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            result = simulator.start(self.path, body)
            if isinstance(result, Pending):
                time.sleep(result.latency)
                result = simulator.finish(result)
            self._send(result)

        def do_GET(self) -> None:
            with simulator._lock:
                stats = {**asdict(simulator.stats), "log": simulator.log}
            self._send(Answer(200, stats))

        def _send(self, answer: Answer) -> None:
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _Server(("127.0.0.1", port), Handler)


class serve_in_thread:
    """Runs a simulator's HTTP server in a thread: ``with serve_in_thread(sim) as url: ...``."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._server = make_server(simulator)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def main(argv: list[str]) -> None:
    """``provider_sim.py REQUESTS TOKENS PER``: serves on a free port, printed on stdout."""
    requests, tokens, per = (float(value) for value in argv[:3])
    server = make_server(Simulator(requests, tokens, per))
    print(server.server_port, flush=True)
    server.serve_forever(poll_interval=0.01)


if __name__ == "__main__":
    main(sys.argv[1:])
