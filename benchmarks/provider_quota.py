"""How close to a provider's quota do 50 agents run, and how many 429s do they meet on the way?

Each configuration runs on a fresh provider simulator (tests/llm/provider_sim.py, an HTTP server
in a process of its own, on the real clock) that enforces a scaled-down quota, by default 20
requests and 20 000 tokens per second, with continuous buckets of its own, and answers real
429s with ``retry-after`` and rate-limit headers. 50 agents call it through the official
``openai`` SDK for a few seconds, each request of mixed size (1 000 to 8 000 characters of
prompt, 20 to 300 tokens of answer, ``max_tokens=300``); the simulator counts the prompt with
a tokenizer other than the client's estimate, as a real provider does.

- (a) the SDK's own retries (2, honouring ``retry-after``), no limit in front;
- (b) tenacity around the SDK (retry on 429 with random exponential backoff, 6 attempts);
- (c) aiolimiter set to the quota (one limiter for requests, one for estimated tokens), with the
  SDK's retries for what still fails;
- (d) towerpy's two ``rate_limit`` layers set to the true quota (tokens settled by the usage),
  ``RetryLayer(is_retryable)`` outside;
- (e) ``ProviderQuotaLayer`` given no numbers (it learns the quota from the headers), with
  ``RetryLayer`` outside;
- (f) ``ProviderQuotaLayer`` given the quota's numbers, with ``RetryLayer`` outside.

For each: the goodput (the tokens the simulator reported as used, per second) as a share of
the most the quota lets through in that time (its burst plus its rate times the run), 429s per
100 requests the simulator received, calls that failed for good (their retries exhausted), and
the p50/p99 latency of an answered call (waiting, retries and the answer). A refused request
counts against the simulator's request budget, as OpenAI documents for its own.

Run: ``python benchmarks/provider_quota.py [--seconds 6] [--agents 50] [--only e,f]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiolimiter
import openai
import tenacity

from _percall import environment
from towerpy import RetryPolicy, ServiceBuilder
from towerpy.llm import (
    ChatRequest,
    Message,
    OpenAIChatModel,
    ProviderQuotaLayer,
    StepOutcome,
    estimate_tokens,
    is_retryable,
)

ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = ROOT / "tests" / "llm" / "provider_sim.py"
MAX_TOKENS = 300

Call = Callable[[str], Awaitable[object]]  # one agent's call, given its prompt


class Simulator:
    """A fresh simulator process: ``with Simulator(r, t) as url``; ``stats()`` reads it."""

    def __init__(self, requests: float, tokens: float) -> None:
        self.args = [str(requests), str(tokens), "1"]

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, str(SIMULATOR), *self.args], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/stats") as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()


def prompt(rng: random.Random) -> str:
    return "x" * rng.randrange(1000, 8000) + f" out={rng.randrange(20, MAX_TOKENS)}"


def estimate(request: ChatRequest) -> int:
    return estimate_tokens(request, output_tokens=MAX_TOKENS)


def wire(text: str) -> dict[str, Any]:
    return {
        "model": "sim",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": MAX_TOKENS,
    }


def request_of(text: str) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)])


def usage(request: ChatRequest, outcome: StepOutcome) -> float:
    return outcome.usage.total_tokens if outcome.usage else estimate(request)


def client(url: str, retries: int) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=retries)


def step(url: str) -> OpenAIChatModel:
    return OpenAIChatModel("sim", client=client(url, 0), max_tokens=MAX_TOKENS)


def policy() -> RetryPolicy:
    return RetryPolicy(6, retry_on=is_retryable)


# -- the configurations: each returns one agent's call and what to close after -----------------


def sdk_retries(url: str, quota: tuple[float, float]) -> Call:
    sdk = client(url, 2)
    return lambda text: sdk.chat.completions.create(**wire(text))


def tenacity_retries(url: str, quota: tuple[float, float]) -> Call:
    sdk = client(url, 0)

    async def call(text: str) -> object:
        async for attempt in tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(openai.RateLimitError),
            # scaled to a quota per second what a per-minute user writes (min=1, max=60)
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
            stop=tenacity.stop_after_attempt(6),
            reraise=True,
        ):
            with attempt:
                return await sdk.chat.completions.create(**wire(text))
        raise AssertionError("unreachable")

    return call


def aiolimiter_quota(url: str, quota: tuple[float, float]) -> Call:
    sdk = client(url, 2)
    requests = aiolimiter.AsyncLimiter(quota[0], 1.0)
    tokens = aiolimiter.AsyncLimiter(quota[1], 1.0)

    async def call(text: str) -> object:
        await requests.acquire()
        await tokens.acquire(estimate(request_of(text)))
        return await sdk.chat.completions.create(**wire(text))

    return call


def towerpy_rate_limits(url: str, quota: tuple[float, float]) -> Call:
    model = (
        ServiceBuilder()
        .retry(policy())
        .rate_limit(quota[0], per=1.0)
        .rate_limit(quota[1], per=1.0, cost=estimate, actual_cost=usage)
        .service(step(url))
    )
    return lambda text: model(request_of(text))


def quota_learned(url: str, quota: tuple[float, float]) -> Call:
    model = (
        ServiceBuilder()
        .retry(policy())
        .provider_quota(per=1.0, estimate=estimate)
        .service(step(url))
    )
    return lambda text: model(request_of(text))


def quota_given(url: str, quota: tuple[float, float]) -> Call:
    layer = ProviderQuotaLayer(requests=quota[0], tokens=quota[1], per=1.0, estimate=estimate)
    model = ServiceBuilder().retry(policy()).layer(layer).service(step(url))
    return lambda text: model(request_of(text))


CONFIGS: dict[str, tuple[str, Callable[[str, tuple[float, float]], Call]]] = {
    "a": ("(a) SDK retries", sdk_retries),
    "b": ("(b) tenacity around the SDK", tenacity_retries),
    "c": ("(c) aiolimiter at the quota", aiolimiter_quota),
    "d": ("(d) towerpy rate_limit x2 at the quota", towerpy_rate_limits),
    "e": ("(e) ProviderQuotaLayer, no numbers", quota_learned),
    "f": ("(f) ProviderQuotaLayer, the numbers", quota_given),
}


async def run_agents(call: Call, agents: int, seconds: float) -> tuple[list[float], int, float]:
    """Runs the agents for ``seconds``; returns the answered calls' latencies, the failures, and
    the run's length (until the last call ended)."""
    latencies: list[float] = []  # of the calls answered
    failures = 0
    start = time.monotonic()
    end = start + seconds

    async def agent(rng: random.Random) -> None:
        nonlocal failures
        while time.monotonic() < end:
            begun = time.monotonic()
            try:
                await call(prompt(rng))
            except Exception:  # a call that failed for good (after its retries)
                failures += 1
            else:
                latencies.append(time.monotonic() - begun)

    async with asyncio.TaskGroup() as tg:
        for n in range(agents):
            tg.create_task(agent(random.Random(1000 + n)))
    return latencies, failures, time.monotonic() - start


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(
    key: str, agents: int, seconds: float, quota: tuple[float, float]
) -> dict[str, Any]:
    name, make = CONFIGS[key]
    simulator = Simulator(*quota)
    with simulator as url:
        call = make(url, quota)
        latencies, failures, elapsed = await run_agents(call, agents, seconds)
        stats = simulator.stats()
    most = quota[1] * (1.0 + elapsed)  # a full bucket (1 s of tokens), then the rate
    return {
        "name": name,
        "goodput": stats["tokens_reported"] / most,
        "per_s": stats["tokens_reported"] / elapsed,
        "rate_limited": 100.0 * stats["rate_limited"] / max(1, stats["requests"]),
        "requests": stats["requests"],
        "calls": len(latencies),
        "failures": failures,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "elapsed": elapsed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--requests", type=float, default=20.0, help="requests per second")
    parser.add_argument("--tokens", type=float, default=20_000.0, help="tokens per second")
    parser.add_argument("--only", default="abcdef", help="configurations to run, e.g. ef")
    args = parser.parse_args()
    quota = (args.requests, args.tokens)
    print(environment("openai", "tenacity", "aiolimiter"))
    print(
        f"{args.agents} agents, {args.seconds:g} s each configuration, quota "
        f"{quota[0]:g} requests/s and {quota[1]:g} tokens/s (burst: 1 s of each)"
    )
    print(
        f"{'configuration':<40} {'goodput':>8} {'tokens/s':>9} {'429/100':>8} "
        f"{'requests':>8} {'failed':>6} {'p50 s':>6} {'p99 s':>6}"
    )
    for key in args.only.replace(",", ""):
        row = await measure(key, args.agents, args.seconds, quota)
        print(
            f"{row['name']:<40} {row['goodput']:>7.1%} {row['per_s']:>9.0f} "
            f"{row['rate_limited']:>8.1f} {row['requests']:>8} {row['failures']:>6} "
            f"{row['p50']:>6.2f} {row['p99']:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
