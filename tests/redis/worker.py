"""One process of the multi-process tests: ``python worker.py MODE BACKEND URL NAME [ARG...]``.

BACKEND ``asyncio`` uses redis.asyncio, ``trio`` uses coredis: a fleet may mix them. The worker
prints ``ready`` once its limiter runs, waits for a line on stdin where the mode says so, and
reports on stdout, one line per event (JSON for results).

Modes:
    bucket RATE BURST SECONDS TASKS SEED: TASKS tasks take costs of 1-4 tokens back to back
        for SECONDS; prints the admissions as ``[Redis time µs, arrival order, cost]`` (the
        order is null when a poll learnt that Redis had admitted the request already).
    permits LIMIT SECONDS TASKS SEED GAUGE: TASKS tasks take a permit, count themselves in
        the Redis counter GAUGE (INCR/DECR), hold it 1-5 ms; prints the highest count seen.
    hold LIMIT N LEASE: takes N permits, prints ``held``, and sleeps until killed.
    wait-permit LIMIT LEASE: waits for a permit; prints ``queued``, then ``granted``.
    wait-bucket RATE BURST FIRST COST: takes FIRST tokens, waits for COST more; prints
        ``queued``, then ``granted``.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
from typing import TYPE_CHECKING, Any

import anyio

from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket
from towerpy.redis._client import text

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def say(line: str) -> None:
    print(line, flush=True)


async def go() -> None:
    await anyio.to_thread.run_sync(sys.stdin.readline)


@contextlib.asynccontextmanager
async def open_client(backend: str, url: str) -> AsyncIterator[Any]:
    if backend == "trio":
        import coredis

        async with coredis.Redis.from_url(url) as client:
            yield client
    else:
        import redis.asyncio

        asyncio_client = redis.asyncio.Redis.from_url(url)
        try:
            yield asyncio_client
        finally:
            await asyncio_client.aclose()


async def until_queued(limiter: RedisTokenBucket | RedisConcurrencyLimiter) -> None:
    while True:
        if limiter.statistics().waiting_here:
            say("queued")
            return
        await anyio.sleep(0.005)


async def bucket(client: Any, name: str, args: list[str]) -> None:
    rate, burst, seconds = float(args[0]), float(args[1]), float(args[2])
    tasks, seed = int(args[3]), int(args[4])
    limiter = RedisTokenBucket(client, name, rate, burst=burst)
    admitted: list[list[float | None]] = []

    async def take(rng: random.Random) -> None:
        while True:
            cost = rng.randint(1, 4)
            reply = await limiter._take(float(cost), "n")
            assert reply is not None
            order = text(reply[1])  # '' when a poll found it admitted on its behalf already
            admitted.append([float(text(reply[2])), int(order) if order else None, cost])

    async with limiter:
        say("ready")
        await go()
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for i in range(tasks):
                    tg.start_soon(take, random.Random(seed * 1000 + i))
    say(json.dumps(admitted))


async def permits(client: Any, name: str, args: list[str]) -> None:
    limit, seconds, tasks, seed, gauge = (
        int(args[0]),
        float(args[1]),
        int(args[2]),
        int(args[3]),
        args[4],
    )
    limiter = RedisConcurrencyLimiter(client, name, limit, lease=2, op_timeout=0.5)
    highest = 0

    async def hold(rng: random.Random) -> None:
        nonlocal highest
        while True:
            permit = await limiter.acquire()
            try:
                highest = max(highest, int(await client.incr(gauge)))
                try:
                    await anyio.sleep(rng.uniform(0.001, 0.005))
                finally:
                    with anyio.CancelScope(shield=True):
                        await client.decr(gauge)  # before the permit goes back
            finally:
                limiter.release(permit)

    async with limiter:
        say("ready")
        await go()
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for i in range(tasks):
                    tg.start_soon(hold, random.Random(seed * 1000 + i))
    say(json.dumps(highest))


async def hold(client: Any, name: str, args: list[str]) -> None:
    limit, count, lease = int(args[0]), int(args[1]), float(args[2])
    limiter = RedisConcurrencyLimiter(client, name, limit, lease=lease, op_timeout=lease / 4)
    async with limiter:
        for _ in range(count):
            await limiter.acquire()
        say("held")
        await anyio.sleep_forever()


async def wait_permit(client: Any, name: str, args: list[str]) -> None:
    limit, lease = int(args[0]), float(args[1])
    limiter = RedisConcurrencyLimiter(client, name, limit, lease=lease, op_timeout=lease / 4)
    async with limiter, anyio.create_task_group() as tg:
        tg.start_soon(until_queued, limiter)
        await limiter.acquire()
        say("granted")
        await anyio.sleep_forever()


async def wait_bucket(client: Any, name: str, args: list[str]) -> None:
    rate, burst, first, cost = (float(arg) for arg in args)
    limiter = RedisTokenBucket(client, name, rate, burst=burst)
    async with limiter, anyio.create_task_group() as tg:
        if first:
            await limiter.acquire(first)
        tg.start_soon(until_queued, limiter)
        await limiter.acquire(cost)
        say("granted")
        await anyio.sleep_forever()


MODES = {
    "bucket": bucket,
    "permits": permits,
    "hold": hold,
    "wait-permit": wait_permit,
    "wait-bucket": wait_bucket,
}


async def main(mode: str, backend: str, url: str, name: str, args: list[str]) -> None:
    async with open_client(backend, url) as client:
        await MODES[mode](client, name, args)


if __name__ == "__main__":
    mode, backend, url, name, *rest = sys.argv[1:]
    anyio.run(main, mode, backend, url, name, rest, backend=backend)
