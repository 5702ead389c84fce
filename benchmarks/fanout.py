"""How close does ParallelToolRouter come to the best a bounded fan-out can do?

N tool calls, each sleeping L seconds, at most K at once. The ideal makespan is
``ceil(N / K) * L``; every implementation runs the same ``invoke`` coroutine (sleep L, build a
`ToolOutput`), so the differences are the scheduler's alone:

- **floor**: K plain asyncio worker tasks pulling ``(index, invocation)`` from one shared
  iterator and writing into a preallocated list: the least work a bounded fan-out can do;
- **gather+Semaphore**: ``asyncio.gather`` over N tasks, each entering one ``asyncio.Semaphore(K)``;
- **aiometer**: ``aiometer.run_all(..., max_at_once=K)``;
- **anyio TG+CapacityLimiter**: one anyio task per call, each entering a ``CapacityLimiter(K)``;
- **ParallelToolRouter**: ``ParallelToolRouter(service_fn(invoke), limit=K)``;
- **ParallelToolRouter+ToolRouter**: the whole stack a user runs, ``ParallelToolRouter`` over a
  ``ToolRouter`` with one ``@tool`` (argument validation included): not part of the target, shown
  for what a real call costs.

Reported per case: makespan ÷ ideal, makespan ÷ floor, and scheduler overhead per call,
``(makespan - ideal) / N``. Implementations alternate round by round, so drift on a shared
machine hits them all; each figure is the median over the rounds, with the lowest and highest.

Memory: N=100 000 pending invocations (K=100, L=1 ms), traced with ``tracemalloc``: the memory
allocated when the first call starts (all N are pending then; the invocations themselves were
allocated before the baseline), divided by N.

Run: ``python benchmarks/fanout.py [--rounds 7] [--memory-only] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import math
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version
from typing import Any

import aiometer
import anyio

from towerpy import service_fn
from towerpy.tools import ParallelToolRouter, ToolInvocation, ToolOutput, ToolRouter, tool

Impl = Callable[[Sequence[ToolInvocation], int], Awaitable[list[Any]]]

CASES = [(1000, 50, 0.010), (10_000, 1000, 0.050), (100, 5, 0.020)]
LATENCY = 0.0
_first_call_memory: int | None = None
_baseline = 0


def mark_first_call() -> None:
    global _first_call_memory
    if _first_call_memory is None and tracemalloc.is_tracing():
        _first_call_memory = tracemalloc.get_traced_memory()[0] - _baseline


async def invoke(invocation: ToolInvocation) -> ToolOutput:
    mark_first_call()
    await asyncio.sleep(LATENCY)
    return ToolOutput(id=invocation.id, name=invocation.name, content=None)


async def floor(invocations: Sequence[ToolInvocation], limit: int) -> list[Any]:
    results: list[Any] = [None] * len(invocations)
    pending = iter(enumerate(invocations))

    async def worker() -> None:
        for index, invocation in pending:
            results[index] = await invoke(invocation)

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(limit, len(invocations))):
            tg.create_task(worker())
    return results


async def gather_semaphore(invocations: Sequence[ToolInvocation], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(invocation: ToolInvocation) -> ToolOutput:
        async with semaphore:
            return await invoke(invocation)

    return await asyncio.gather(*(one(invocation) for invocation in invocations))


async def with_aiometer(invocations: Sequence[ToolInvocation], limit: int) -> list[Any]:
    jobs = [functools.partial(invoke, invocation) for invocation in invocations]
    return await aiometer.run_all(jobs, max_at_once=limit)


async def anyio_limiter(invocations: Sequence[ToolInvocation], limit: int) -> list[Any]:
    limiter = anyio.CapacityLimiter(limit)
    results: list[Any] = [None] * len(invocations)

    async def one(index: int, invocation: ToolInvocation) -> None:
        async with limiter:
            results[index] = await invoke(invocation)

    async with anyio.create_task_group() as tg:
        for index, invocation in enumerate(invocations):
            tg.start_soon(one, index, invocation)
    return results


_plain = service_fn(invoke)


async def towerpy_parallel(invocations: Sequence[ToolInvocation], limit: int) -> list[Any]:
    return await ParallelToolRouter(_plain, limit=limit)(invocations)  # type: ignore[arg-type]


@tool
async def work(item: int) -> None:
    """Sleeps for the benchmark's latency."""
    mark_first_call()
    await asyncio.sleep(LATENCY)


_router = ToolRouter([work])


async def towerpy_full_stack(invocations: Sequence[ToolInvocation], limit: int) -> list[Any]:
    return await ParallelToolRouter(_router, limit=limit)(invocations)  # type: ignore[arg-type]


IMPLS: dict[str, Impl] = {
    "floor (K workers, one iterator)": floor,
    "gather+Semaphore": gather_semaphore,
    "aiometer": with_aiometer,
    "anyio TG+CapacityLimiter": anyio_limiter,
    "ParallelToolRouter": towerpy_parallel,
    "ParallelToolRouter+ToolRouter": towerpy_full_stack,
}


def invocations_for(n: int) -> list[ToolInvocation]:
    return [ToolInvocation(id=f"call_{i}", name="work", arguments={"item": i}) for i in range(n)]


def run_once(impl: Impl, invocations: list[ToolInvocation], limit: int) -> float:
    async def main() -> float:
        start = time.perf_counter()
        results = await impl(invocations, limit)
        elapsed = time.perf_counter() - start
        assert len(results) == len(invocations)
        assert results[-1].id == invocations[-1].id
        return elapsed

    gc.collect()
    return asyncio.run(main())


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def bench_case(n: int, limit: int, latency: float, rounds: int) -> None:
    global LATENCY
    LATENCY = latency
    invocations = invocations_for(n)
    ideal = math.ceil(n / limit) * latency
    times: dict[str, list[float]] = {name: [] for name in IMPLS}
    for impl in IMPLS.values():  # warm-up
        run_once(impl, invocations, limit)
    for _ in range(rounds):
        for name, impl in IMPLS.items():
            times[name].append(run_once(impl, invocations, limit))
    print(f"\n### N={n}, K={limit}, L={latency * 1000:g} ms (ideal {ideal * 1000:g} ms)\n")
    print("| implementation | makespan ms | ÷ ideal | ÷ floor | overhead µs/call |")
    print("|---|---|---|---|---|")
    floor_times = times["floor (K workers, one iterator)"]
    for name, values in times.items():
        makespans = [v * 1000 for v in values]
        vs_ideal = [v / ideal for v in values]
        vs_floor = [v / f for v, f in zip(values, floor_times, strict=True)]  # same round
        overhead = [(v - ideal) / n * 1e6 for v in values]
        print(
            f"| {name} | {spread(makespans)} | {spread(vs_ideal)} | {spread(vs_floor)} | "
            f"{spread(overhead)} |"
        )


def bench_memory(rounds: int) -> None:
    global LATENCY, _first_call_memory, _baseline
    LATENCY = 0.001
    n, limit = 100_000, 100
    print(f"\n### Memory per pending invocation, N={n}, K={limit}, L=1 ms\n")
    print("| implementation | bytes per pending invocation |")
    print("|---|---|")
    invocations = invocations_for(n)
    for name, impl in IMPLS.items():
        samples: list[float] = []
        for _ in range(rounds):
            gc.collect()
            tracemalloc.start()
            _first_call_memory = None
            _baseline = tracemalloc.get_traced_memory()[0]
            run_once(impl, invocations, limit)
            tracemalloc.stop()
            assert _first_call_memory is not None
            samples.append(_first_call_memory / n)
        low, high = min(samples), max(samples)
        print(f"| {name} | {statistics.median(samples):.1f} ({low:.1f}-{high:.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (default 7)")
    parser.add_argument("--memory-only", action="store_true", help="only the memory figure")
    parser.add_argument("--quick", action="store_true", help="only the first case, 3 rounds")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"anyio {version('anyio')}, pydantic {version('pydantic')}, aiometer {version('aiometer')}"
    )
    if not args.memory_only:
        cases = CASES[:1] if args.quick else CASES
        for n, limit, latency in cases:
            bench_case(n, limit, latency, 3 if args.quick else args.rounds)
    bench_memory(1 if args.quick else 3)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
