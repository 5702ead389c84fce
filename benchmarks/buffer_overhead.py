"""What does a BufferLayer cost per call? Sequential calls, and 64 callers at once.

A buffer hands every request to a worker task, which starts the inner call in a task of its
own and hands the outcome back: two task switches and a task per call. Sequential calls show
that latency; 64 concurrent callers show the throughput cost. The inner service returns at
once, so the figures are the buffer's own cost. Run: ``python benchmarks/buffer_overhead.py``.
"""

from __future__ import annotations

import anyio

from _percall import environment, report, run, time_cases
from towerpy import BufferLayer, service_fn

CALLS = 10_000
ROUNDS = 5
CALLERS = 64


async def work(request: int) -> int:
    return request


async def main() -> None:
    svc = service_fn(work)
    buffer = BufferLayer(CALLERS).layer(svc)

    async def bare(n: int) -> None:
        for i in range(n):
            await svc(i)

    async def buffered(n: int) -> None:
        for i in range(n):
            await buffer(i)

    async def concurrently(target: object, n: int) -> None:
        async def caller(calls: int) -> None:
            for i in range(calls):
                await target(i)  # type: ignore[operator]

        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller, n // CALLERS)

    async def bare_concurrent(n: int) -> None:
        await concurrently(svc, n)

    async def buffered_concurrent(n: int) -> None:
        await concurrently(buffer, n)

    async with buffer:
        sequential = await time_cases(
            {"service_fn(work), sequential": bare, "BufferLayer over it, sequential": buffered},
            calls=CALLS,
            rounds=ROUNDS,
        )
        concurrent = await time_cases(
            {
                f"service_fn(work), {CALLERS} callers": bare_concurrent,
                f"BufferLayer over it, {CALLERS} callers": buffered_concurrent,
            },
            calls=CALLS,
            rounds=ROUNDS,
        )
    print(environment())
    report("buffer, one caller (latency per call)", sequential, "service_fn(work), sequential")
    report(
        f"buffer, {CALLERS} concurrent callers (time per call)",
        concurrent,
        f"service_fn(work), {CALLERS} callers",
    )


if __name__ == "__main__":
    run(main)
