"""What does a BufferLayer cost per call, next to the queue and worker a user would write?

The alternative is the obvious hand-written one: an ``asyncio.Queue(bound)`` of (request,
future) pairs and one worker task that awaits each call and sets the future. It runs the calls
one at a time; the same queue with a task spawned per call runs them concurrently, as the buffer
does, so both are measured. Sequential calls show the latency a buffer adds; 64 callers at once
show its cost under load. The inner service returns at once, so the figures are the queues' own
cost. A last pair puts a concurrency limit under the buffer: the worker then hands a real
reservation to each caller. Run: ``python benchmarks/buffer_overhead.py``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from _percall import environment, report, run, time_cases
from towerpy import BufferLayer, ConcurrencyLimitLayer, Service, service_fn

CALLS = 20_000
ROUNDS = 7
CALLERS = 64

Call = Callable[[int], Awaitable[int]]


async def work(request: int) -> int:
    return request


class QueueWorker:
    """The hand-written buffer: a bounded asyncio.Queue and one worker task."""

    def __init__(self, fn: Call, bound: int, *, task_per_call: bool) -> None:
        self.fn = fn
        self.queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue(bound)
        self.task_per_call = task_per_call
        self.tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, request: int) -> int:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def answer(self, request: int, future: asyncio.Future[int]) -> None:
        try:
            future.set_result(await self.fn(request))
        except Exception as exc:
            future.set_exception(exc)

    async def worker(self) -> None:
        while True:
            request, future = await self.queue.get()
            if self.task_per_call:
                task = asyncio.create_task(self.answer(request, future))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                await self.answer(request, future)


def sequential(target: Call) -> Callable[[int], Awaitable[None]]:
    async def case(n: int) -> None:
        for i in range(n):
            await target(i)

    return case


def concurrent(target: Call) -> Callable[[int], Awaitable[None]]:
    async def caller(calls: int) -> None:
        for i in range(calls):
            await target(i)

    async def case(n: int) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller, n // CALLERS)

    return case


async def main() -> None:
    svc = service_fn(work)
    buffer = BufferLayer(CALLERS).layer(svc)
    limited = ConcurrencyLimitLayer(CALLERS).layer(svc)
    buffered_limit = BufferLayer(CALLERS).layer(ConcurrencyLimitLayer(CALLERS).layer(svc))
    serial = QueueWorker(work, CALLERS, task_per_call=False)
    spawning = QueueWorker(work, CALLERS, task_per_call=True)
    workers = [asyncio.create_task(q.worker()) for q in (serial, spawning)]
    targets: dict[str, Any] = {
        "service_fn(work)": svc,
        "BufferLayer over it": buffer,
        "asyncio.Queue + worker": serial,
        "asyncio.Queue + worker, task per call": spawning,
    }
    limit_targets: dict[str, Any] = {
        "ConcurrencyLimit(64)": limited,
        "BufferLayer over ConcurrencyLimit(64)": buffered_limit,
    }
    try:
        async with buffer, buffered_limit:
            one = await time_cases(
                {name: sequential(t) for name, t in targets.items()}, calls=CALLS, rounds=ROUNDS
            )
            many = await time_cases(
                {name: concurrent(t) for name, t in targets.items()}, calls=CALLS, rounds=ROUNDS
            )
            one_limited = await time_cases(
                {name: sequential(t) for name, t in limit_targets.items()},
                calls=CALLS,
                rounds=ROUNDS,
            )
    finally:
        for task in workers:
            task.cancel()
    print(environment())
    report("one caller (latency per call)", one, "service_fn(work)")
    report(f"{CALLERS} concurrent callers (time per call)", many, "service_fn(work)")
    report("one caller, a concurrency limit under the buffer", one_limited, "ConcurrencyLimit(64)")
    for title, results in (("one caller", one), (f"{CALLERS} callers", many)):
        buffered = results["BufferLayer over it"]
        print(
            f"\n{title}: BufferLayer is {buffered / results['asyncio.Queue + worker']:.2f}x "
            f"asyncio.Queue + worker, "
            f"{buffered / results['asyncio.Queue + worker, task per call']:.2f}x "
            "with a task per call"
        )


class Gated(Service[int, int]):
    """Not ready until ``gate`` is set: every request waits in the buffer until then."""

    def __init__(self) -> None:
        self.gate = anyio.Event()

    async def ready(self) -> None:
        await self.gate.wait()

    async def call(self, request: int) -> int:
        return request


async def deep_queue(count: int, bound: int, *, buffered: bool) -> float:
    """Microseconds per request: ``count`` callers queue (one in 7 then leaves), then all go.

    Unbuffered, the callers wait on the inner service's readiness themselves: the cost of the
    tasks and their wake-ups, to subtract.
    """
    inner = Gated()
    buffer = BufferLayer(bound).layer(inner)
    target: Service[int, int] = buffer if buffered else inner
    scopes: list[anyio.CancelScope] = []

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await target(0)

    gc.collect()
    gc.disable()  # tens of thousands of live tasks: full collections would dominate the figure
    try:
        start = time.perf_counter()
        async with buffer, anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            for scope in scopes[::7]:
                scope.cancel()
            inner.gate.set()
        return (time.perf_counter() - start) / count * 1e6
    finally:
        gc.enable()


def deep_queues() -> None:
    print("\nmany queued requests (bound 100; one in 7 callers leaves): us per request")
    print(f"{'case':<26}" + "".join(f"{n:>10,}" for n in DEPTHS))
    for backend in ("asyncio", "trio"):
        for buffered in (False, True):
            figures = [
                min(
                    anyio.run(partial(deep_queue, n, 100, buffered=buffered), backend=backend)
                    for _ in range(3)
                )
                for n in DEPTHS
            ]
            name = f"{backend}, {'buffered' if buffered else 'callers alone'}"
            print(f"{name:<26}" + "".join(f"{f:>10.1f}" for f in figures))


DEPTHS = (1_000, 10_000, 40_000)

if __name__ == "__main__":
    run(main)
    deep_queues()
