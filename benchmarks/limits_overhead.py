"""What do towerpy's limits and timeout add to a call, next to the primitives users pick instead?

One process run measures, per call, in nanoseconds: a bare call; each towerpy layer alone
(concurrency limit, keyed concurrency limit, rate limit, timeout, load shed); the three stacked
(concurrency + rate + timeout) and the four stacked (load shed outermost); and, around the same
bare call, asyncio.Semaphore, anyio.CapacityLimiter, asyncio.timeout, anyio.fail_after and
aiolimiter.AsyncLimiter (and, on trio, trio's own CapacityLimiter and fail_after). Nothing
waits: limits are never reached, rates never run out, timeouts never fire; that is the path
every request takes when the system is healthy. A last pair of rows per backend ("contended")
has 100 tasks share 10 permits, so that waiting and handing permits over is measured too.

Two shapes: sequential (one task, calls back to back) and concurrent (100 tasks, each call
yielding to the event loop once, so the tasks interleave).

Scenarios run in interleaved rounds; each figure is the median over rounds, with the spread
(min-max) in brackets. Ratios: to the bare call, and to the closest peer (same job).

Usage: python benchmarks/limits_overhead.py [--rounds 7] [--calls 20000] [--backend asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import aiolimiter
import anyio
import trio

from towerpy import (
    ConcurrencyLimit,
    KeyedConcurrencyLimit,
    LoadShed,
    RateLimit,
    Service,
    ServiceBuilder,
    Timeout,
)

LIMIT = 1000  # never reached in the "no waiting" rows
CONTENDED_LIMIT = 10
TASKS = 100
HUGE_RATE = 1e12
LONG = 3600.0

Call = Callable[[int], Awaitable[Any]]


class Bare(Service[int, int]):
    async def call(self, request: int) -> int:
        return request


class AsyncioYield(Service[int, int]):
    async def call(self, request: int) -> int:
        await asyncio.sleep(0)
        return request


class TrioYield(Service[int, int]):
    async def call(self, request: int) -> int:
        await trio.lowlevel.checkpoint()
        return request


@dataclass
class Scenario:
    name: str
    make: Callable[[Service[int, int]], Call]
    peer: str | None = None  # the closest peer's name
    added_target_ns: float | None = None
    concurrent_limit: int | None = None  # rows that only make sense with waiting
    seq: list[float] = field(default_factory=list)
    conc: list[float] = field(default_factory=list)


def towerpy_rows(backend: str) -> list[Scenario]:
    sem_peer = "asyncio.Semaphore" if backend == "asyncio" else "anyio.CapacityLimiter"
    timeout_peer = "asyncio.timeout" if backend == "asyncio" else "anyio.fail_after"
    rate_peer = "aiolimiter.AsyncLimiter" if backend == "asyncio" else None
    stack_peer = "peer stack (3)" if backend == "asyncio" else "anyio stack (2)"
    target = backend == "asyncio"
    return [
        Scenario(
            "towerpy ConcurrencyLimit",
            lambda s: ConcurrencyLimit(s, LIMIT),
            sem_peer,
            1000 if target else None,
        ),
        Scenario(
            "towerpy KeyedConcurrencyLimit",
            lambda s: KeyedConcurrencyLimit(s, key_of, {0: LIMIT}),
            sem_peer,
        ),
        Scenario(
            "towerpy RateLimit",
            lambda s: RateLimit(s, HUGE_RATE),
            rate_peer,
            1000 if target else None,
        ),
        Scenario(
            "towerpy Timeout", lambda s: Timeout(s, LONG), timeout_peer, 4000 if target else None
        ),
        Scenario("towerpy LoadShed", lambda s: LoadShed(s)),
        Scenario(
            "towerpy stack (3): limit+rate+timeout", stack3, stack_peer, 6000 if target else None
        ),
        Scenario("towerpy stack (4): +load_shed", stack4, stack_peer),
    ]


def key_of(_: int) -> int:
    return 0


def stack3(inner: Service[int, int]) -> Call:
    return (
        ServiceBuilder().concurrency_limit(LIMIT).rate_limit(HUGE_RATE).timeout(LONG).service(inner)
    )


def stack4(inner: Service[int, int]) -> Call:
    return (
        ServiceBuilder()
        .load_shed()
        .concurrency_limit(LIMIT)
        .rate_limit(HUGE_RATE)
        .timeout(LONG)
        .service(inner)
    )


def asyncio_peers() -> list[Scenario]:
    def semaphore(inner: Service[int, int], limit: int = LIMIT) -> Call:
        sem = asyncio.Semaphore(limit)

        async def call(x: int) -> int:
            async with sem:
                return await inner.call(x)

        return call

    def capacity_limiter(inner: Service[int, int], limit: int = LIMIT) -> Call:
        limiter = anyio.CapacityLimiter(limit)

        async def call(x: int) -> int:
            async with limiter:
                return await inner.call(x)

        return call

    def asyncio_timeout(inner: Service[int, int]) -> Call:
        async def call(x: int) -> int:
            async with asyncio.timeout(LONG):
                return await inner.call(x)

        return call

    def fail_after(inner: Service[int, int]) -> Call:
        async def call(x: int) -> int:
            with anyio.fail_after(LONG):
                return await inner.call(x)

        return call

    def aiolimiter_row(inner: Service[int, int]) -> Call:
        limiter = aiolimiter.AsyncLimiter(HUGE_RATE, 1)

        async def call(x: int) -> int:
            async with limiter:
                return await inner.call(x)

        return call

    def peer_stack(inner: Service[int, int]) -> Call:
        sem = asyncio.Semaphore(LIMIT)
        limiter = aiolimiter.AsyncLimiter(HUGE_RATE, 1)

        async def call(x: int) -> int:
            async with sem, limiter, asyncio.timeout(LONG):
                return await inner.call(x)

        return call

    return [
        Scenario("asyncio.Semaphore", semaphore),
        Scenario("anyio.CapacityLimiter", capacity_limiter),
        Scenario("asyncio.timeout", asyncio_timeout),
        Scenario("anyio.fail_after", fail_after),
        Scenario("aiolimiter.AsyncLimiter", aiolimiter_row),
        Scenario("peer stack (3)", peer_stack),
        Scenario(
            "contended: towerpy ConcurrencyLimit(10)",
            lambda s: ConcurrencyLimit(s, CONTENDED_LIMIT),
            "contended: asyncio.Semaphore(10)",
            concurrent_limit=CONTENDED_LIMIT,
        ),
        Scenario(
            "contended: asyncio.Semaphore(10)",
            lambda s: semaphore(s, CONTENDED_LIMIT),
            concurrent_limit=CONTENDED_LIMIT,
        ),
        Scenario(
            "contended: anyio.CapacityLimiter(10)",
            lambda s: capacity_limiter(s, CONTENDED_LIMIT),
            concurrent_limit=CONTENDED_LIMIT,
        ),
    ]


def trio_peers() -> list[Scenario]:
    def capacity_limiter(inner: Service[int, int], limit: int = LIMIT) -> Call:
        limiter = anyio.CapacityLimiter(limit)

        async def call(x: int) -> int:
            async with limiter:
                return await inner.call(x)

        return call

    def trio_limiter(inner: Service[int, int], limit: int = LIMIT) -> Call:
        limiter = trio.CapacityLimiter(limit)

        async def call(x: int) -> int:
            async with limiter:
                return await inner.call(x)

        return call

    def fail_after(inner: Service[int, int]) -> Call:
        async def call(x: int) -> int:
            with anyio.fail_after(LONG):
                return await inner.call(x)

        return call

    def trio_fail_after(inner: Service[int, int]) -> Call:
        async def call(x: int) -> int:
            with trio.fail_after(LONG):
                return await inner.call(x)

        return call

    def anyio_stack(inner: Service[int, int]) -> Call:
        limiter = anyio.CapacityLimiter(LIMIT)

        async def call(x: int) -> int:
            async with limiter:
                with anyio.fail_after(LONG):
                    return await inner.call(x)

        return call

    return [
        Scenario("anyio.CapacityLimiter", capacity_limiter),
        Scenario("trio.CapacityLimiter", trio_limiter),
        Scenario("anyio.fail_after", fail_after),
        Scenario("trio.fail_after", trio_fail_after),
        Scenario("anyio stack (2)", anyio_stack),
        Scenario(
            "contended: towerpy ConcurrencyLimit(10)",
            lambda s: ConcurrencyLimit(s, CONTENDED_LIMIT),
            "contended: anyio.CapacityLimiter(10)",
            concurrent_limit=CONTENDED_LIMIT,
        ),
        Scenario(
            "contended: anyio.CapacityLimiter(10)",
            lambda s: capacity_limiter(s, CONTENDED_LIMIT),
            concurrent_limit=CONTENDED_LIMIT,
        ),
        Scenario(
            "contended: trio.CapacityLimiter(10)",
            lambda s: trio_limiter(s, CONTENDED_LIMIT),
            concurrent_limit=CONTENDED_LIMIT,
        ),
    ]


async def sequential(call: Call, n: int) -> float:
    for i in range(200):  # warm up
        await call(i)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for i in range(n):
            await call(i)
        return (time.perf_counter_ns() - start) / n
    finally:
        gc.enable()


async def concurrent(call: Call, n: int, backend: str) -> float:
    per_task = max(1, n // TASKS)

    async def worker() -> None:
        for i in range(per_task):
            await call(i)

    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        if backend == "asyncio":
            async with asyncio.TaskGroup() as tg:
                for _ in range(TASKS):
                    tg.create_task(worker())
        else:
            async with trio.open_nursery() as nursery:
                for _ in range(TASKS):
                    nursery.start_soon(worker)
        return (time.perf_counter_ns() - start) / (per_task * TASKS)
    finally:
        gc.enable()


async def measure(backend: str, rounds: int, calls: int) -> list[Scenario]:
    bare = Scenario("bare call", lambda s: s.call)
    rows = [bare, *towerpy_rows(backend)]
    rows += asyncio_peers() if backend == "asyncio" else trio_peers()
    seq_inner: Service[int, int] = Bare()
    conc_inner: Service[int, int] = AsyncioYield() if backend == "asyncio" else TrioYield()
    for _ in range(rounds):
        for row in rows:
            if row.concurrent_limit is None:
                row.seq.append(await sequential(row.make(seq_inner), calls))
            row.conc.append(await concurrent(row.make(conc_inner), calls, backend))
    return rows


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def report(backend: str, rows: list[Scenario]) -> None:
    by_name = {row.name: row for row in rows}
    bare = by_name["bare call"]
    print(f"\n### {backend}\n")
    print(
        "| scenario | sequential ns/call [min-max] | added ns | x bare | x peer "
        "| 100 tasks ns/call [min-max] | added ns | x bare | x peer | target (added, seq) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [row.name]
        for mine, base in ((row.seq, bare.seq), (row.conc, bare.conc)):
            if not mine:
                cells += ["-", "-", "-", "-"]
                continue
            median = statistics.median(mine)
            base_median = statistics.median(base)
            peer = by_name.get(row.peer) if row.peer else None
            peer_values = (peer.seq if mine is row.seq else peer.conc) if peer else []
            cells.append(fmt(mine))
            cells.append(f"{median - base_median:,.0f}" if row is not bare else "-")
            cells.append(f"{median / base_median:.2f}" if row.concurrent_limit is None else "-")
            cells.append(
                f"{median / statistics.median(peer_values):.2f} ({row.peer})"
                if peer_values
                else "-"
            )
        if row.added_target_ns is not None and row.seq:
            added = statistics.median(row.seq) - statistics.median(bare.seq)
            met = "met" if added <= row.added_target_ns else "MISSED"
            cells.append(f"<= {row.added_target_ns:,.0f}: {met}")
        else:
            cells.append("")
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()} ({platform.system()}), "
        f"anyio {version('anyio')}, trio {version('trio')}, aiolimiter {version('aiolimiter')}; "
        f"{args.rounds} rounds of {args.calls} calls; figures: median [min-max] ns per call"
    )
    if args.backend in ("asyncio", "both"):
        report("asyncio", asyncio.run(measure("asyncio", args.rounds, args.calls)))
    if args.backend in ("trio", "both"):
        report("trio", trio.run(measure, "trio", args.rounds, args.calls))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
