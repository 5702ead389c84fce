"""What does a retry layer cost when nothing fails? RetryLayer vs tenacity vs stamina.

Each case makes sequential successful calls to an async function that returns at once, so
the figures are the wrappers' own cost. Run: ``python benchmarks/retry_overhead.py``.
"""

from __future__ import annotations

import stamina
import tenacity

from _percall import environment, report, run, time_cases
from towerpy import RetryBudget, RetryLayer, RetryPolicy, service_fn

CALLS = 20_000
ROUNDS = 7


async def work(request: int) -> int:
    return request


async def main() -> None:
    svc = service_fn(work)
    retry = RetryLayer(RetryPolicy()).layer(svc)
    retry_budget = RetryLayer(RetryPolicy(budget=RetryBudget())).layer(svc)
    stamina.set_active(True)

    async def bare(n: int) -> None:
        for i in range(n):
            await work(i)

    async def service(n: int) -> None:
        for i in range(n):
            await svc(i)

    async def towerpy_retry(n: int) -> None:
        for i in range(n):
            await retry(i)

    async def towerpy_retry_budget(n: int) -> None:
        for i in range(n):
            await retry_budget(i)

    async def tenacity_async_retrying(n: int) -> None:
        for i in range(n):
            async for attempt in tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(3),
                wait=tenacity.wait_random_exponential(multiplier=0.1, max=30),
                reraise=True,
            ):
                with attempt:
                    await work(i)

    async def stamina_retry_context(n: int) -> None:
        for i in range(n):
            async for attempt in stamina.retry_context(on=Exception, attempts=3):
                with attempt:
                    await work(i)

    results = await time_cases(
        {
            "bare: await work(x)": bare,
            "tenacity AsyncRetrying around work": tenacity_async_retrying,
            "stamina.retry_context around work": stamina_retry_context,
            "towerpy: service_fn(work)": service,
            "towerpy: RetryLayer over service_fn": towerpy_retry,
            "towerpy: RetryLayer + RetryBudget": towerpy_retry_budget,
        },
        calls=CALLS,
        rounds=ROUNDS,
    )
    print(environment("tenacity", "stamina"))
    report("retry, success path (vs bare call)", results, "bare: await work(x)")
    service_cost = results["towerpy: service_fn(work)"]
    print("\nwhat each retry wrapper adds to the call it wraps (us):")
    for name, base in (
        ("tenacity AsyncRetrying around work", results["bare: await work(x)"]),
        ("stamina.retry_context around work", results["bare: await work(x)"]),
        ("towerpy: RetryLayer over service_fn", service_cost),
        ("towerpy: RetryLayer + RetryBudget", service_cost),
    ):
        print(f"  {name:<42} {results[name] - base:7.2f}")


if __name__ == "__main__":
    run(main)
