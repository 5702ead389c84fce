"""What does a production stack cost per call? towerpy layers vs the same stack by hand.

The stack: a concurrency limit, a rate limit, retries, and a timeout on each attempt, around an
async function that returns at once (so nothing ever waits or fails and the figures are the
stack's own cost). By hand, a user would write it with ``asyncio.Semaphore``, ``aiolimiter``,
``tenacity`` and ``asyncio.timeout``. Run: ``python benchmarks/full_stack.py``.
"""

from __future__ import annotations

import asyncio

import aiolimiter
import tenacity

from _percall import environment, report, run, time_cases
from towerpy import RetryPolicy, ServiceBuilder, service_fn

CALLS = 20_000
ROUNDS = 7
LIMIT = 100
RATE = 1e12  # never the bottleneck: the rate limit is checked, never waited for


async def work(request: int) -> int:
    return request


async def main() -> None:
    stack = (
        ServiceBuilder()
        .concurrency_limit(LIMIT)
        .rate_limit(RATE)
        .retry(RetryPolicy(max_attempts=3))
        .timeout(10.0)
        .service(service_fn(work))
    )
    semaphore = asyncio.Semaphore(LIMIT)
    limiter = aiolimiter.AsyncLimiter(RATE, 1.0)

    async def by_hand_one(request: int) -> int:
        async with semaphore, limiter:
            async for attempt in tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(3),
                wait=tenacity.wait_random_exponential(multiplier=0.1, max=30),
                reraise=True,
            ):
                with attempt:
                    async with asyncio.timeout(10.0):
                        return await work(request)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def bare(n: int) -> None:
        for i in range(n):
            await work(i)

    async def towerpy_stack(n: int) -> None:
        for i in range(n):
            await stack(i)

    async def by_hand(n: int) -> None:
        for i in range(n):
            await by_hand_one(i)

    results = await time_cases(
        {
            "bare: await work(x)": bare,
            "by hand: Semaphore+aiolimiter+tenacity+timeout": by_hand,
            "towerpy: concurrency+rate+retry+timeout": towerpy_stack,
        },
        calls=CALLS,
        rounds=ROUNDS,
    )
    print(environment("aiolimiter", "tenacity"))
    report("full stack, success path (vs bare call)", results, "bare: await work(x)")
    hand = results["by hand: Semaphore+aiolimiter+tenacity+timeout"]
    ours = results["towerpy: concurrency+rate+retry+timeout"]
    print(f"\ntowerpy stack / hand-written stack: {ours / hand:.3f}")


if __name__ == "__main__":
    run(main)
