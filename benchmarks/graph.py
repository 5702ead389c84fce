"""How close does a dependency graph of tool calls come to its critical path, next to waves?

A random graph of 1 000 tool calls (fixed seed): each call depends on up to three of the 120
calls before it, sleeps a random latency (20 to 200 ms: API calls), and takes the output of its
first dependency as an argument (``{"$output": id}``). No schedule can finish before the
**critical path** (the longest chain of latencies); every implementation runs the same
``invoke`` coroutine:

- **ParallelToolRouter**: the batch with ``depends_on``, ``ParallelToolRouter(service_fn(invoke),
  limit=K)``: each call starts the moment its last dependency ends, if fewer than K run;
- **waves (gather per level)**: what users write by hand: the topological levels one after the
  other (`ToolGraph.levels`), each an ``asyncio.gather`` (with an ``asyncio.Semaphore(K)``),
  the outputs put into the next level's arguments; each level waits for its slowest call;
- **task per call + futures (by hand)**: one asyncio task per call awaiting its dependencies'
  futures, under an ``asyncio.Semaphore(K)``: the careful hand-written scheduler, for its cost.

K=1000 lets every ready call run (the case the targets are set on: makespan ÷ critical path
<= 1.02, and at least 20 % shorter than waves); K=16 shows the same under a tight limit, where
the critical path is no longer reachable. Also printed: the waves' own ideal (the sum over
levels of the slowest latency), which bounds what any waves implementation can do. Last, the
same graph with calls that answer at once (``asyncio.sleep(0)``): the scheduler's own cost
per call.

Each link of a chain costs the event loop's timer lateness as well (asyncio rounds a wait up to
the millisecond, and a loaded machine wakes late): with short latencies
(``--latency 0.005 0.05 --window 60``) that, not the scheduler, dominates the ratio, for the
hand-written scheduler as much as for towerpy.

Implementations alternate round by round; each figure is the median over the rounds, with the
lowest and highest. Run: ``python benchmarks/graph.py [--rounds 5] [--calls 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from _percall import environment
from towerpy import service_fn
from towerpy.tools import ParallelToolRouter, ToolGraph, ToolInvocation, ToolOutput

Impl = Callable[[Sequence[ToolInvocation], int], Awaitable[list[Any]]]

SCALE = 1.0  # 0: every call answers at once


def graph(
    calls: int, window: int, latencies: tuple[float, float], seed: int = 14
) -> list[ToolInvocation]:
    rng = random.Random(seed)
    batch = []
    for n in range(calls):
        deps = sorted({rng.randrange(max(0, n - window), n) for _ in range(rng.randint(0, 3))})
        ids = tuple(f"c{d}" for d in deps) if n else ()
        arguments: dict[str, Any] = {"latency": round(rng.uniform(*latencies), 4)}
        if ids:
            arguments["input"] = {"$output": ids[0]}
        batch.append(ToolInvocation(id=f"c{n}", name="work", arguments=arguments, depends_on=ids))
    return batch


async def invoke(invocation: ToolInvocation) -> ToolOutput:
    await asyncio.sleep(invocation.arguments["latency"] * SCALE)
    return ToolOutput(id=invocation.id, name=invocation.name, content=invocation.id)


_service = service_fn(invoke)


async def towerpy_graph(batch: Sequence[ToolInvocation], limit: int) -> list[Any]:
    return await ParallelToolRouter(_service, limit=limit)(list(batch))


def _with_outputs(invocation: ToolInvocation, outputs: dict[str, Any]) -> ToolInvocation:
    reference = invocation.arguments.get("input")
    if reference is None:
        return invocation
    arguments = {**invocation.arguments, "input": outputs[reference["$output"]]}
    return invocation.model_copy(update={"arguments": arguments})


async def waves(batch: Sequence[ToolInvocation], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)
    outputs: dict[str, Any] = {}

    async def one(invocation: ToolInvocation) -> ToolOutput:
        async with semaphore:
            return await invoke(_with_outputs(invocation, outputs))

    for level in ToolGraph(batch).levels():
        for output in await asyncio.gather(*(one(invocation) for invocation in level)):
            outputs[output.id] = output.content
    return [outputs[invocation.id] for invocation in batch]


async def task_per_call(batch: Sequence[ToolInvocation], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)
    loop = asyncio.get_running_loop()
    done = {invocation.id: loop.create_future() for invocation in batch}
    outputs: dict[str, Any] = {}

    async def one(invocation: ToolInvocation) -> ToolOutput:
        for dependency in invocation.depends_on:
            await done[dependency]
        async with semaphore:
            output = await invoke(_with_outputs(invocation, outputs))
        outputs[invocation.id] = output.content
        done[invocation.id].set_result(None)
        return output

    return await asyncio.gather(*(one(invocation) for invocation in batch))


IMPLS: dict[str, Impl] = {
    "ParallelToolRouter": towerpy_graph,
    "waves (gather per level)": waves,
    "task per call + futures (by hand)": task_per_call,
}


def run_once(impl: Impl, batch: list[ToolInvocation], limit: int) -> float:
    async def main() -> float:
        start = time.perf_counter()
        results = await impl(batch, limit)
        elapsed = time.perf_counter() - start
        assert len(results) == len(batch)
        return elapsed

    gc.collect()
    return asyncio.run(main())


def spread(values: list[float], digits: int = 3) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def bench(batch: list[ToolInvocation], limit: int, rounds: int) -> None:
    tool_graph = ToolGraph(batch)
    critical = tool_graph.critical_path(lambda invocation: invocation.arguments["latency"])
    levels = tool_graph.levels()
    ideal_waves = sum(max(i.arguments["latency"] for i in level) for level in levels)
    print(
        f"\n### {len(batch)} calls, {sum(len(i.depends_on) for i in batch)} dependencies, "
        f"{len(levels)} levels, K={limit}: critical path {critical * 1000:.1f} ms, "
        f"ideal waves {ideal_waves * 1000:.1f} ms\n"
    )
    times: dict[str, list[float]] = {name: [] for name in IMPLS}
    for impl in IMPLS.values():  # warm-up
        run_once(impl, batch, limit)
    for _ in range(rounds):
        for name, impl in IMPLS.items():
            times[name].append(run_once(impl, batch, limit))
    print("| implementation | makespan ms | ÷ critical path | vs waves (same round) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        versus = [1 - v / w for v, w in zip(values, times["waves (gather per level)"], strict=True)]
        print(
            f"| {name} | {spread([v * 1000 for v in values], 1)} | "
            f"{spread([v / critical for v in values])} | "
            f"{spread([100 * v for v in versus], 1)} % shorter |"
        )


def bench_overhead(batch: list[ToolInvocation], rounds: int) -> None:
    global SCALE
    SCALE = 0.0
    try:
        times: dict[str, list[float]] = {name: [] for name in IMPLS}
        for impl in IMPLS.values():
            run_once(impl, batch, len(batch))
        for _ in range(rounds * 3):
            for name, impl in IMPLS.items():
                times[name].append(run_once(impl, batch, len(batch)))
    finally:
        SCALE = 1.0
    print(f"\n### The same graph, calls that answer at once, K={len(batch)}\n")
    print("| implementation | µs per call | x task per call |")
    print("|---|---|---|")
    base = times["task per call + futures (by hand)"]
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"| {name} | {spread([v / len(batch) * 1e6 for v in values], 2)} | {spread(ratios)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--window", type=int, default=120, help="dependencies among the N before")
    parser.add_argument(
        "--latency", type=float, nargs=2, default=(0.02, 0.2), metavar=("MIN", "MAX")
    )
    args = parser.parse_args()
    print(environment("pydantic"))
    batch = graph(args.calls, args.window, tuple(args.latency))
    for limit in (args.calls, 16):
        bench(batch, limit, args.rounds)
    bench_overhead(batch, args.rounds)


if __name__ == "__main__":
    main()
