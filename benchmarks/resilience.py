"""Resilience: hedging a heavy-tailed backend, and an outage of one of three endpoints.

Both questions are about time spent waiting on slow or broken backends, not about CPU, so they
run in virtual time (`VirtualTimeEventLoop`): the backends' latencies are simulated, every
figure is exact, and the same on every run (seeded).

1. Tail latency. A backend answers in 80-120 ms, but 5 % of its calls take 20 times as long.
   Requests arrive at 100 per second. Bare calls, next to `HedgeLayer` (default quantile 0.95
   and 0.9, budget 10 %), next to what users often write instead: a timeout at the usual
   latency and a retry. Then the same backend slows down for everyone for 20 s, where a hedge
   must not multiply the load.
2. Outage. Three endpoints (each serves 4 calls at once; a 5th gets HTTP 429 at once) answer
   in 0.4-0.8 s; the first stops answering from 5 s to 25 s (calls hang until a 2 s timeout).
   Twelve workers send 360 requests. `Balance` (p2c) over circuit breakers, next to
   round-robin without a breaker (with and without a retry), next to pydantic-ai's
   `FallbackModel` over the three endpoints (when pydantic-ai is installed).

Last, on the real clock, what each layer adds per call when nothing fails (a successful call
to an async function that returns at once; best of 5 rounds of 20 000 calls).

Run: ``python benchmarks/resilience.py``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from _percall import environment, report, time_cases
from towerpy import (
    Balance,
    CircuitBreaker,
    ConstantBackoff,
    ExponentialBackoff,
    RateLimited,
    RetryPolicy,
    Service,
    ServiceBuilder,
    service_fn,
)
from towerpy.llm import is_retryable
from towerpy.testing import VirtualTimeEventLoop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

try:
    from pydantic_ai import Agent
    from pydantic_ai.exceptions import ModelHTTPError
    from pydantic_ai.messages import ModelResponse, TextPart
    from pydantic_ai.models.fallback import FallbackModel
    from pydantic_ai.models.function import AgentInfo, FunctionModel
except ImportError:  # pragma: no cover - reported in the output
    FallbackModel = None


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- 1. tail latency ------------------------------------------------------------------------

REQUESTS = 20_000
RATE = 100.0  # requests per second, arriving at a steady pace


class HeavyTail:
    """80-120 ms, and 5 % of calls 20 times as long; optionally slow for everyone for a while."""

    def __init__(self, seed: int, slow_window: tuple[float, float] | None = None) -> None:
        self.random = random.Random(seed)
        self.attempts = 0
        self.slow_window = slow_window
        self.start = 0.0

    async def __call__(self, request: int) -> int:
        self.attempts += 1
        latency = self.random.uniform(0.08, 0.12)
        if self.random.random() < 0.05:
            latency *= 20
        if self.slow_window is not None:
            elapsed = anyio.current_time() - self.start
            if self.slow_window[0] <= elapsed < self.slow_window[1]:
                latency = self.random.uniform(1.0, 1.2)
        await anyio.sleep(latency)
        return request


@dataclass
class TailResult:
    name: str
    latencies: list[float]
    failed: int
    extra_load: float


async def open_loop(
    name: str,
    build: Callable[[Service[int, int]], Service[int, int]],
    requests: int,
    slow_window: tuple[float, float] | None = None,
) -> TailResult:
    backend = HeavyTail(seed=1, slow_window=slow_window)
    svc = build(service_fn(backend))
    latencies: list[float] = []
    failed = 0

    async def one(n: int) -> None:
        nonlocal failed
        start = anyio.current_time()
        try:
            await svc(n)
        except Exception:
            failed += 1
        else:
            latencies.append(anyio.current_time() - start)

    backend.start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for n in range(requests):
            tg.start_soon(one, n)
            await anyio.sleep(1 / RATE)
    return TailResult(name, latencies, failed, backend.attempts / requests - 1)


TAIL_CASES: dict[str, Callable[[Service[int, int]], Service[int, int]]] = {
    "bare": lambda s: s,
    "HedgeLayer() (quantile 0.95, budget 10 %)": lambda s: ServiceBuilder().hedge().service(s),
    "HedgeLayer(quantile=0.9)": lambda s: ServiceBuilder().hedge(quantile=0.9).service(s),
    "timeout 150 ms + retry (3 tries)": lambda s: (
        ServiceBuilder().retry(RetryPolicy(3, backoff=ConstantBackoff(0))).timeout(0.15).service(s)
    ),
}


def print_tail(title: str, results: list[TailResult]) -> None:
    print(f"\n{title}")
    print(f"{'case':<44} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>9} {'failed':>7} {'extra':>7}")
    bare = results[0]
    for r in results:
        p50, p99, p999 = (quantile(r.latencies, q) * 1000 for q in (0.5, 0.99, 0.999))
        print(
            f"{r.name:<44} {p50:>7.0f} {p99:>7.0f} {p999:>9.0f} {r.failed:>7} {r.extra_load:>6.1%}"
        )
    for r in results[1:]:
        cut = quantile(bare.latencies, 0.99) / quantile(r.latencies, 0.99)
        print(f"  p99 cut by {r.name}: {cut:.1f}x at {r.extra_load:.1%} extra load")


# --- 2. outage of one of three endpoints ----------------------------------------------------

WORKERS = 12
PER_WORKER = 30
CAPACITY = 4
TIMEOUT = 2.0
OUTAGE = (5.0, 25.0)


class Busy(Exception):
    """The endpoint's server is at capacity (HTTP 429)."""


class Endpoint:
    """0.4-0.8 s per call, at most CAPACITY at once; hangs during the outage if it is the one."""

    def __init__(self, name: str, seed: int, start: float, down: bool) -> None:
        self.name = name
        self.random = random.Random(seed)
        self.start = start
        self.down = down
        self.in_flight = 0
        self.hung = 0
        self.calls = 0

    async def handle(self, request: int) -> str:
        if self.in_flight >= CAPACITY:
            raise Busy(f"{self.name}: 429")
        self.calls += 1
        self.in_flight += 1
        try:
            latency = self.random.uniform(0.4, 0.8)
            elapsed = anyio.current_time() - self.start
            if self.down and OUTAGE[0] <= elapsed < OUTAGE[1]:
                self.hung += 1
                await anyio.sleep_forever()
            await anyio.sleep(latency)
            return self.name
        finally:
            self.in_flight -= 1


def endpoints() -> list[Endpoint]:
    start = anyio.current_time()
    return [Endpoint(f"e{n}", n, start, down=n == 0) for n in range(3)]


def towerpy_endpoint(endpoint: Endpoint, breaker: CircuitBreaker | None) -> Service[int, str]:
    async def call(request: int) -> str:
        try:
            return await endpoint.handle(request)
        except Busy as exc:
            raise RateLimited(str(exc), status_code=429, retryable=True) from exc

    stack = ServiceBuilder()
    if breaker is not None:
        stack = stack.circuit_breaker(breaker=breaker)
    # the client-side limit matches the server's: readiness says when an endpoint is full
    return stack.timeout(TIMEOUT).concurrency_limit(CAPACITY).service(service_fn(call))


def retried(svc: Service[int, str]) -> Service[int, str]:
    policy = RetryPolicy(3, retry_on=is_retryable, backoff=ExponentialBackoff(0.1, jitter=False))
    return ServiceBuilder().retry(policy).service(svc)


@dataclass
class OutageResult:
    name: str
    failed: int
    makespan: float
    hung: int
    p99: float


async def closed_loop(
    name: str, send: Callable[[int], Awaitable[Any]], eps: list[Endpoint]
) -> OutageResult:
    start = anyio.current_time()
    failed = 0
    latencies: list[float] = []

    async def worker(w: int) -> None:
        nonlocal failed
        for n in range(PER_WORKER):
            asked = anyio.current_time()
            try:
                await send(w * PER_WORKER + n)
            except Exception:
                failed += 1
            else:
                latencies.append(anyio.current_time() - asked)

    async with anyio.create_task_group() as tg:
        for w in range(WORKERS):
            tg.start_soon(worker, w)
    return OutageResult(
        name,
        failed,
        anyio.current_time() - start,
        sum(e.hung for e in eps),
        quantile(latencies, 0.99),
    )


async def balance_with_breakers() -> OutageResult:
    eps = endpoints()
    breakers = [CircuitBreaker(3, recovery_time=5.0) for _ in eps]
    balance = Balance(
        [towerpy_endpoint(e, b) for e, b in zip(eps, breakers, strict=True)],
        rng=random.Random(7),
    )
    return await closed_loop(
        "towerpy Balance (p2c) + circuit breakers + retry", retried(balance), eps
    )


def round_robin(services: list[Service[int, str]]) -> Callable[[int], Awaitable[str]]:
    turn = 0

    async def send(request: int) -> str:
        nonlocal turn
        service = services[turn % len(services)]
        turn += 1
        return await service(request)

    return send


async def round_robin_retry() -> OutageResult:
    eps = endpoints()
    stacks = [towerpy_endpoint(e, None) for e in eps]
    rr = service_fn(round_robin(stacks))
    return await closed_loop("round-robin + retry, no breaker", retried(rr), eps)


async def round_robin_bare() -> OutageResult:
    eps = endpoints()
    stacks = [towerpy_endpoint(e, None) for e in eps]
    return await closed_loop("round-robin, no breaker, no retry", round_robin(stacks), eps)


async def pydantic_ai_fallback() -> OutageResult:
    eps = endpoints()

    def model(endpoint: Endpoint) -> Any:
        async def respond(messages: list[Any], info: AgentInfo) -> ModelResponse:
            try:
                with anyio.fail_after(TIMEOUT):
                    text = await endpoint.handle(0)
            except TimeoutError as exc:
                raise ModelHTTPError(504, endpoint.name) from exc
            except Busy as exc:
                raise ModelHTTPError(429, endpoint.name) from exc
            return ModelResponse(parts=[TextPart(text)])

        return FunctionModel(respond)

    agent = Agent(FallbackModel(*(model(e) for e in eps)))

    async def send(request: int) -> Any:
        return await agent.run(f"request {request}")

    return await closed_loop("pydantic-ai FallbackModel(e0, e1, e2)", send, eps)


def print_outage(results: list[OutageResult]) -> None:
    print(
        f"\noutage: {WORKERS} workers x {PER_WORKER} requests, 3 endpoints of {CAPACITY} "
        f"calls each, e0 hangs from {OUTAGE[0]:g} s to {OUTAGE[1]:g} s (timeout {TIMEOUT:g} s)"
    )
    print(f"{'case':<52} {'failed':>7} {'makespan s':>11} {'hung calls':>11} {'p99 s':>7}")
    for r in results:
        print(f"{r.name:<52} {r.failed:>7} {r.makespan:>11.1f} {r.hung:>11} {r.p99:>7.2f}")


async def main() -> None:
    tail = [await open_loop(name, build, REQUESTS) for name, build in TAIL_CASES.items()]
    print_tail(
        f"tail latency: {REQUESTS} requests at {RATE:g}/s, 80-120 ms, 5 % of calls 20x slower",
        tail,
    )
    slow = [
        await open_loop(name, build, 6_000, slow_window=(20.0, 40.0))
        for name, build in TAIL_CASES.items()
    ]
    print_tail("the same backend, slow for everyone (1.0-1.2 s) from 20 s to 40 s of 60 s", slow)
    outage = [await balance_with_breakers(), await round_robin_retry(), await round_robin_bare()]
    if FallbackModel is not None:
        outage.append(await pydantic_ai_fallback())
    print_outage(outage)
    if FallbackModel is None:
        print("pydantic-ai is not installed: pip install pydantic-ai-slim to compare FallbackModel")


# --- 3. what each layer adds per call, real clock ------------------------------------------


async def work(request: int) -> int:
    return request


async def overhead() -> None:
    plain = service_fn(work)
    stacks: dict[str, Service[int, int]] = {
        "service_fn(work)": plain,
        "circuit_breaker()": ServiceBuilder().circuit_breaker().service(plain),
        "fallback(...)": ServiceBuilder().fallback(plain).service(plain),
        "hedge() (a race per request, none hedged)": ServiceBuilder().hedge().service(plain),
        "Balance of 3 (p2c)": Balance([plain, plain, plain]),
        "Balance of 3 (round_robin)": Balance([plain, plain, plain], choose="round_robin"),
        "Balance of 3 circuit breakers (p2c)": Balance(
            [ServiceBuilder().circuit_breaker().service(plain) for _ in range(3)]
        ),
    }

    def case(svc: Service[int, int]) -> Callable[[int], Awaitable[None]]:
        async def run(n: int) -> None:
            for i in range(n):
                await svc(i)

        return run

    results = await time_cases(
        {name: case(svc) for name, svc in stacks.items()}, calls=20_000, rounds=5
    )
    report(
        "what each layer adds per call, nothing failing (real clock)", results, "service_fn(work)"
    )


if __name__ == "__main__":
    packages = ("pydantic-ai-slim",) if FallbackModel is not None else ()
    print(environment(*packages) + "; virtual time")
    anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualTimeEventLoop})
    anyio.run(overhead, backend="asyncio")
