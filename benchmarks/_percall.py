"""Per-call timing shared by the retry, buffer and stack benchmarks: best of several rounds."""

from __future__ import annotations

import asyncio
import gc
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version

Case = Callable[[int], Awaitable[None]]  # runs n calls


async def time_cases(cases: dict[str, Case], *, calls: int, rounds: int) -> dict[str, float]:
    """Returns the best microseconds per call of each case; rounds interleave the cases."""
    best = dict.fromkeys(cases, float("inf"))
    for case in cases.values():  # warm up caches, lazily built state, the allocator
        await case(max(1, calls // 10))
    for _ in range(rounds):
        for name, case in cases.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter_ns()
                await case(calls)
                elapsed = time.perf_counter_ns() - start
            finally:
                gc.enable()
            best[name] = min(best[name], elapsed / calls / 1000)
    return best


def report(title: str, results: dict[str, float], baseline: str) -> None:
    """Prints µs per call, the overhead over ``baseline`` and the ratio to it."""
    base = results[baseline]
    print(f"\n{title}")
    print(f"{'case':<44} {'us/call':>9} {'overhead us':>12} {'x baseline':>11}")
    for name, micros in results.items():
        print(f"{name:<44} {micros:>9.2f} {micros - base:>12.2f} {micros / base:>11.2f}")


def environment(*packages: str) -> str:
    """One line naming the interpreter, the machine and the versions measured."""
    versions = ", ".join(f"{name} {version(name)}" for name in ("anyio", *packages))
    return (
        f"Python {sys.version.split()[0]} on {platform.machine()} {platform.system()}; {versions}"
    )


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Runs a benchmark on the default asyncio loop (what most users run)."""
    asyncio.run(main())  # type: ignore[arg-type]


def median_spread(values: list[float]) -> str:
    """Formats the median and the spread (min to max) of repeated measurements."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
