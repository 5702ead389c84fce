"""How exactly does towerpy's TokenBucket hold a rate, next to aiolimiter, on the real clock?

20 tasks acquire from one limiter of 200 requests per second, as fast as they are let through,
for 5 seconds. For each limiter: the achieved rate after the initial burst (requests admitted
beyond the burst, divided by the time of the last admission), the busiest
1-second window (the bound is rate + burst), whether waiters got in first-come first-served
(inversions: a request admitted before one that queued earlier), and the CPU time spent per
admitted request (waiting without polling costs nothing).

Two shapes of the same rate: burst 200 (aiolimiter's AsyncLimiter(200, 1): a bucket of a
second's worth) and burst 20 (AsyncLimiter(20, 0.1)). TokenBucket also runs on trio.

Usage: python benchmarks/rate_accuracy.py [--seconds 5] [--tasks 20] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING

import aiolimiter
import trio

from towerpy import TokenBucket
from towerpy._backend import current_time

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@dataclass
class Result:
    name: str
    burst: float
    admitted: list[tuple[float, int]]  # (time since start, ticket taken when it queued)
    cpu: float
    seconds: float
    rate: float

    def row(self) -> str:
        times = [t for t, _ in self.admitted]
        # the burst goes at once; the rest at the rate, the last one at times[-1]
        steady = (len(times) - self.burst) / times[-1]
        worst = worst_window(times, 1.0)
        tickets = [ticket for _, ticket in self.admitted]
        inversions = sum(1 for a, b in itertools.pairwise(tickets) if b < a)
        cpu_us = self.cpu / max(1, len(times)) * 1e6
        return (
            f"| {self.name} | {self.burst:g} | {len(times)} | {steady:.2f} "
            f"| {100 * (steady - self.rate) / self.rate:+.2f} % | {worst} "
            f"(bound {self.rate + self.burst:g}) | {inversions} | {cpu_us:.1f} |"
        )


def worst_window(times: list[float], width: float) -> int:
    """The most admissions in any window [t, t + width), t being an admission time."""
    best = 0
    last = 0
    for first, start in enumerate(times):
        while last < len(times) and times[last] < start + width:
            last += 1
        best = max(best, last - first)
    return best


async def drive(
    acquire: Callable[[], Awaitable[object]],
    now: Callable[[], float],
    tasks: int,
    seconds: float,
    spawn: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]],
) -> tuple[list[tuple[float, int]], float]:
    tickets = itertools.count()
    admitted: list[tuple[float, int]] = []
    start = now()
    cpu_start = time.process_time()

    async def worker() -> None:
        while True:
            ticket = next(tickets)
            await acquire()
            elapsed = now() - start
            if elapsed >= seconds:
                return
            admitted.append((elapsed, ticket))

    await spawn(worker)
    return admitted, time.process_time() - cpu_start


def asyncio_spawner(tasks: int) -> Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]:
    async def spawn(worker: Callable[[], Awaitable[None]]) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(tasks):
                tg.create_task(worker())  # type: ignore[arg-type]

    return spawn


def trio_spawner(tasks: int) -> Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]:
    async def spawn(worker: Callable[[], Awaitable[None]]) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)

    return spawn


async def asyncio_run_towerpy(rate: float, burst: float, tasks: int, seconds: float) -> Result:
    bucket = TokenBucket(rate, burst=burst)
    admitted, cpu = await drive(
        lambda: bucket.acquire(1), current_time, tasks, seconds, asyncio_spawner(tasks)
    )
    return Result("towerpy TokenBucket (asyncio)", burst, admitted, cpu, seconds, rate)


async def asyncio_run_aiolimiter(rate: float, burst: float, tasks: int, seconds: float) -> Result:
    limiter = aiolimiter.AsyncLimiter(burst, burst / rate)
    loop = asyncio.get_running_loop()
    admitted, cpu = await drive(limiter.acquire, loop.time, tasks, seconds, asyncio_spawner(tasks))
    return Result("aiolimiter AsyncLimiter", burst, admitted, cpu, seconds, rate)


async def trio_run_towerpy(rate: float, burst: float, tasks: int, seconds: float) -> Result:
    bucket = TokenBucket(rate, burst=burst)
    admitted, cpu = await drive(
        lambda: bucket.acquire(1), trio.current_time, tasks, seconds, trio_spawner(tasks)
    )
    return Result("towerpy TokenBucket (trio)", burst, admitted, cpu, seconds, rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, anyio {version('anyio')}, trio {version('trio')}, "
        f"aiolimiter {version('aiolimiter')}; {args.tasks} tasks, {args.rate:g} req/s, "
        f"{args.seconds:g} s, real clock\n"
    )
    print(
        "| limiter | burst | admitted | achieved rate (req/s, after the burst) | error "
        "| busiest 1 s window | FIFO inversions | CPU us per request |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for burst in (args.rate, args.rate / 10):
        runs = [
            asyncio.run(asyncio_run_towerpy(args.rate, burst, args.tasks, args.seconds)),
            asyncio.run(asyncio_run_aiolimiter(args.rate, burst, args.tasks, args.seconds)),
            trio.run(trio_run_towerpy, args.rate, burst, args.tasks, args.seconds),
        ]
        for result in runs:
            print(result.row(), flush=True)


if __name__ == "__main__":
    main()
