"""What does a limit shared through Redis cost per request, next to a round trip to Redis itself?

One process run, against a private ``redis-server`` it starts on a free port (or ``--url``):

1. Per acquire, in microseconds, sequential (one task) and 100 concurrent tasks, nothing ever
   waiting: PING and a minimal EVALSHA (``return 1``), the round-trip floors; towerpy's
   ``RedisTokenBucket`` (acquire, try_acquire) and ``RedisConcurrencyLimiter`` (acquire +
   release) on redis.asyncio and on coredis; the ``limits`` library's Redis strategies that do
   the same job (moving window, sliding window counter: a hit admits or refuses, it cannot
   wait); and the in-process ``TokenBucket`` for scale. Ratios to the minimal EVALSHA.
2. Round trips per queued admission: 100 tasks on a bucket that makes every one of them wait
   (and on a concurrency limit of 10), every script call counted.
3. The multi-process run of the tests, measured: 4 processes (2 asyncio + redis.asyncio, 2 trio
   + coredis) x 10 tasks on one bucket of 200 tokens/s, burst 20, costs 1-4, for 3 s: achieved
   rate, worst window against the bound, FIFO, Redis CPU and commands per admission, memory.
4. Memory for a 1,000,000 tokens/minute budget after 250 requests of 4,000 tokens: towerpy's
   bucket next to the ``limits`` moving window (one list entry per token).

Cases run in interleaved rounds; each figure is the median over rounds, spread in brackets.
The targets (issue 10): an uncontended acquire at most 1.5x a minimal EVALSHA; a queued
admission at most 3 round trips.

Usage: python benchmarks/redis_limits.py [--rounds 5] [--calls 2000] [--url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import version
from typing import Any

import anyio
import coredis
import redis.asyncio
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

import redis
from towerpy import TokenBucket
from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket, _lua
from towerpy.redis._client import text

TASKS = 100
HUGE = 1e9  # tokens per second: never waits

Case = Callable[[int], Awaitable[None]]


# --- a private server -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def private_server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed: install it, or pass --url")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        flags = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
        process = subprocess.Popen(
            [executable, "--port", str(port), *flags],
            stdout=subprocess.DEVNULL,
        )
        try:
            sync = redis.Redis(port=port)
            for _ in range(200):
                try:
                    sync.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            sync.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


def fresh() -> str:
    return f"bench-{uuid.uuid4().hex[:10]}"


# --- timing ---------------------------------------------------------------------------------


def concurrently(one: Callable[[], Awaitable[Any]]) -> Case:
    async def case(n: int) -> None:
        async def task(count: int) -> None:
            for _ in range(count):
                await one()

        async with anyio.create_task_group() as tg:
            for i in range(TASKS):
                tg.start_soon(task, n // TASKS + (1 if i < n % TASKS else 0))

    return case


def sequentially(one: Callable[[], Awaitable[Any]]) -> Case:
    async def case(n: int) -> None:
        for _ in range(n):
            await one()

    return case


async def time_rounds(cases: dict[str, Case], calls: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():
        await case(max(TASKS, calls // 10))  # warm up: connections, loaded scripts
    for _ in range(rounds):
        for name, case in cases.items():
            gc.collect()
            start = time.perf_counter()
            await case(calls)
            results[name].append((time.perf_counter() - start) / calls * 1e6)
    return results


def print_table(title: str, results: dict[str, list[float]], floor: str) -> None:
    base = statistics.median(results[floor])
    print(f"\n{title}")
    print(f"{'case':<58} {'us/acquire':>22} {'x EVALSHA':>10}")
    for name, values in results.items():
        median = statistics.median(values)
        spread = f"{median:.1f} ({min(values):.1f}-{max(values):.1f})"
        print(f"{name:<58} {spread:>22} {median / base:>10.2f}")


async def per_acquire(url: str, calls: int, rounds: int) -> None:
    client = redis.asyncio.Redis.from_url(url, max_connections=2 * TASKS + 10)
    minimal = client.register_script("return 1")
    storage = RedisStorage("async+" + url, implementation="redispy", max_connections=2 * TASKS + 10)
    moving = MovingWindowRateLimiter(storage)
    sliding = SlidingWindowCounterRateLimiter(storage)
    item = RateLimitItemPerSecond(10**9)
    local = TokenBucket(HUGE)
    async with coredis.Redis.from_url(url) as core:
        core_minimal = core.register_script("return 1")
        buckets = [RedisTokenBucket(client, fresh(), HUGE), RedisTokenBucket(core, fresh(), HUGE)]
        limiters = [
            RedisConcurrencyLimiter(client, fresh(), 10**6),
            RedisConcurrencyLimiter(core, fresh(), 10**6),
        ]
        async with buckets[0], buckets[1], limiters[0], limiters[1]:
            keys = {"moving": fresh(), "sliding": fresh()}

            async def acquire_release(limiter: RedisConcurrencyLimiter) -> None:
                limiter.release(await limiter.acquire())

            ones: dict[str, Callable[[], Awaitable[Any]]] = {
                "PING (redis.asyncio)": client.ping,
                "EVALSHA 'return 1' (redis.asyncio)": minimal,
                "towerpy RedisTokenBucket.acquire (redis.asyncio)": lambda: buckets[0].acquire(1),
                "towerpy RedisTokenBucket.try_acquire (redis.asyncio)": lambda: buckets[
                    0
                ].try_acquire(1),
                "towerpy RedisConcurrencyLimiter acquire+release (redis.asyncio)": lambda: (
                    acquire_release(limiters[0])
                ),
                "PING (coredis)": core.ping,
                "EVALSHA 'return 1' (coredis)": lambda: core_minimal([], []),
                "towerpy RedisTokenBucket.acquire (coredis)": lambda: buckets[1].acquire(1),
                "towerpy RedisConcurrencyLimiter acquire+release (coredis)": lambda: (
                    acquire_release(limiters[1])
                ),
                "limits moving window hit (redis.asyncio)": lambda: moving.hit(
                    item, keys["moving"]
                ),
                "limits sliding window counter hit (redis.asyncio)": lambda: sliding.hit(
                    item, keys["sliding"]
                ),
                "in-process TokenBucket.acquire (no Redis)": lambda: local.acquire(1),
            }
            floor = "EVALSHA 'return 1' (redis.asyncio)"
            sequential = await time_rounds(
                {name: sequentially(one) for name, one in ones.items()}, calls, rounds
            )
            print_table("per acquire, one task, back to back", sequential, floor)
            concurrent = await time_rounds(
                {name: concurrently(one) for name, one in ones.items()}, calls, rounds
            )
            print_table(f"per acquire, {TASKS} concurrent tasks (total time / acquires)",
                        concurrent, floor)  # fmt: skip
    await client.aclose()


# --- round trips per queued admission --------------------------------------------------------

SCRIPT_NAMES = {
    getattr(_lua, name): name.lower() for name in _lua.__all__
}  # source -> "bucket_acquire", ...


class Counted:
    """A limiter's connection that counts the scripts it runs, by kind."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.counts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def run(self, script: str, keys: Any, args: Any) -> Any:
        name = SCRIPT_NAMES[script]
        if name.endswith("acquire"):
            name += " " + {"n": "arrive", "p": "poll", "t": "try"}[args[2]]
        self.counts[name] += 1
        return await self.conn.run(script, keys, args)


def count_calls(limiter: RedisTokenBucket | RedisConcurrencyLimiter) -> Counter[str]:
    counted = Counted(limiter._shared.conn)
    limiter._shared.conn = counted  # type: ignore[assignment]
    return counted.counts


async def round_trips(url: str, seconds: float) -> None:
    client = redis.asyncio.Redis.from_url(url, max_connections=2 * TASKS + 10)
    print(f"\nround trips per queued admission ({TASKS} tasks always waiting, {seconds:g} s)")
    for rate, burst in [(200, 1), (1000, 1), (1000, 10)]:
        bucket = RedisTokenBucket(client, fresh(), rate, burst=burst)
        counts = count_calls(bucket)
        admitted = 0

        async def take(bucket: RedisTokenBucket = bucket) -> None:
            nonlocal admitted
            while True:
                await bucket.acquire(1)
                admitted += 1

        async with bucket:
            with anyio.move_on_after(seconds):
                async with anyio.create_task_group() as tg:
                    for _ in range(TASKS):
                        tg.start_soon(take)
        total = sum(counts.values())
        print(
            f"  bucket of {rate} tokens/s, burst {burst}: {admitted / seconds:.0f} admissions/s, "
            f"{total / admitted:.2f} script calls per admission ({dict(counts)})"
        )
    limiter = RedisConcurrencyLimiter(client, fresh(), 10)
    counts = count_calls(limiter)
    granted = 0

    async def hold() -> None:
        nonlocal granted
        while True:
            permit = await limiter.acquire()
            granted += 1
            await anyio.sleep(0.001)
            limiter.release(permit)

    async with limiter:
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for _ in range(TASKS):
                    tg.start_soon(hold)
    total = sum(counts.values())
    print(
        f"  concurrency limit 10, each call 1 ms: {granted} grants ({granted / seconds:.0f}/s), "
        f"{total / granted:.2f} script calls per grant ({dict(counts)})"
    )
    await client.aclose()


# --- four processes -------------------------------------------------------------------------


async def worker(backend: str, url: str, name: str, seconds: float, seed: int) -> None:
    import random

    async with contextlib.AsyncExitStack() as stack:
        if backend == "trio":
            client: Any = await stack.enter_async_context(coredis.Redis.from_url(url))
        else:
            client = redis.asyncio.Redis.from_url(url)
            stack.push_async_callback(client.aclose)
        bucket = RedisTokenBucket(client, name, 200, burst=20)
        admitted: list[list[float | None]] = []

        async def take(rng: random.Random) -> None:
            while True:
                cost = rng.randint(1, 4)
                reply = await bucket._take(float(cost), "n")
                assert reply is not None
                order = text(reply[1])  # '' if a poll found it admitted already
                admitted.append([float(text(reply[2])), int(order) if order else None, cost])

        async with bucket:
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            with anyio.move_on_after(seconds):
                async with anyio.create_task_group() as tg:
                    for i in range(10):
                        tg.start_soon(take, random.Random(seed * 100 + i))
        print(json.dumps(admitted), flush=True)


def fleet(url: str, seconds: float) -> None:
    name = fresh()
    sync = redis.Redis.from_url(url)
    sync.config_resetstat()
    cpu_before = sync.info("cpu")
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", backend, url, name, str(seconds), str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed, backend in enumerate(["asyncio", "trio", "asyncio", "trio"])
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    log = sorted(
        (stamp, -1 if order is None else order, cost)  # -1: admitted on its behalf, order lost
        for process in processes
        for stamp, order, cost in json.loads(process.stdout.readline())  # type: ignore[union-attr]
    )
    for process in processes:
        process.wait()
    cpu_after = sync.info("cpu")
    stats = sync.info("commandstats")
    memory = sum(sync.memory_usage(key) or 0 for key in sync.scan_iter(match=f"*{name}*"))
    sync.close()
    stamps = [entry[0] for entry in log]
    costs = [entry[2] for entry in log]
    worst = -float("inf")
    for i in range(len(log)):
        taken = 0.0
        for j in range(i, len(log)):
            taken += costs[j]
            worst = max(worst, taken - (20 + 200 * (stamps[j] - stamps[i]) / 1e6))
    orders = [entry[1] for entry in log if entry[1] != -1]
    span = (stamps[-1] - stamps[0]) / 1e6
    rate = (sum(costs) - 20) / span
    cpu = sum(cpu_after[k] - cpu_before[k] for k in ("used_cpu_sys", "used_cpu_user"))
    evalsha = stats.get("cmdstat_evalsha", {}).get("calls", 0)
    script_us = stats.get("cmdstat_evalsha", {}).get("usec", 0)
    print(
        f"\n4 processes x 10 tasks, one bucket of 200 tokens/s, burst 20, costs 1-4, {seconds:g} s"
        f"\n  {len(log)} admissions over {span:.2f} s: achieved {rate:.2f} tokens/s "
        f"({(rate / 200 - 1) * 100:+.2f} % of the rate); busiest window "
        f"{worst:+.3f} tokens against the bound burst + rate*w; FIFO by arrival: "
        f"{orders == sorted(orders)} (order known for {len(orders)} of {len(log)})"
        f"\n  Redis, per admission: {evalsha / len(log):.2f} EVALSHA taking "
        f"{script_us / len(log):.0f} us of scripts ({cpu * 1e6 / len(log):.0f} us of CPU with "
        f"pub/sub, connections and Redis's own timers); {memory} bytes for every key of the "
        f"bucket at the end"
    )


async def memory(client: Any, name: str) -> int:
    keys = [key async for key in client.scan_iter(match=f"*{name}*")]
    return sum([await client.memory_usage(key) or 0 for key in keys])


async def tpm_memory(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    storage = RedisStorage("async+" + url, implementation="redispy")
    moving = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(1_000_000)
    key = fresh()
    start = time.perf_counter()
    for _ in range(250):
        await moving.hit(item, key, cost=4000)
    moving_ms = (time.perf_counter() - start) / 250 * 1000
    moving_bytes = await memory(client, key)
    bucket = RedisTokenBucket(client, fresh(), 1_000_000, per=60)
    async with bucket:
        start = time.perf_counter()
        for _ in range(250):
            await bucket.acquire(4000)
        bucket_ms = (time.perf_counter() - start) / 250 * 1000
    bucket_bytes = await memory(client, bucket.name)
    print(
        "\na 1,000,000 tokens/minute budget after 250 requests of 4,000 tokens"
        f"\n  limits moving window: {moving_bytes / 1e6:.1f} MB, {moving_ms:.2f} ms per request"
        f"\n  towerpy RedisTokenBucket: {bucket_bytes} bytes, {bucket_ms:.2f} ms per request"
    )
    await client.aclose()


def environment(url: str) -> str:
    sync = redis.Redis.from_url(url)
    server = sync.info("server")["redis_version"]
    sync.close()
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("anyio", "redis", "hiredis", "coredis", "limits")
    )
    return (
        f"Python {sys.version.split()[0]} on {platform.machine()} {platform.system()}, "
        f"{os.cpu_count()} cores; Redis {server} on loopback; {packages}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--url", default=None, help="a Redis to use instead of a private one")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, url, name, seconds, seed = args.worker
        anyio.run(worker, backend, url, name, float(seconds), int(seed), backend=backend)
        return
    with private_server(args.url) as url:
        print(environment(url))
        asyncio.run(per_acquire(url, args.calls, args.rounds))
        asyncio.run(round_trips(url, 2.0))
        fleet(url, args.seconds)
        asyncio.run(tpm_memory(url))


if __name__ == "__main__":
    main()
