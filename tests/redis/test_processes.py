"""Several processes sharing one limit, on the real clock: what the limits are for.

Each test starts worker processes (``worker.py``), half on asyncio with redis.asyncio and half on
trio with coredis: the two clients share limits. Runs are kept to a few seconds; every bound
says its tolerance.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import redis

from .support import SHARED_URL

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.real_clock

WORKER = str(Path(__file__).with_name("worker.py"))


class Fleet:
    """Worker processes, killed at the end of the test whatever happens."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, mode: str, backend: str, name: str, *args: object) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, WORKER, mode, backend, SHARED_URL, name, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        self.processes.append(process)
        return process

    @staticmethod
    def line(process: subprocess.Popen[str], within: float = 20.0) -> str:
        """The worker's next line (startup included: imports take a while on a busy machine)."""
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], within)
        assert ready, f"no line from the worker within {within}s"
        line = process.stdout.readline()
        assert line, f"the worker exited ({process.wait()})"
        return line.strip()

    def go(self) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    workers = Fleet()
    try:
        yield workers
    finally:
        workers.kill()


BACKENDS = ["asyncio", "trio", "asyncio", "trio"]


def test_four_processes_share_one_rate_exactly_in_arrival_order(fleet: Fleet, name: str) -> None:
    rate, burst, seconds = 200, 20, 3.0
    workers = [
        fleet.start("bucket", backend, name, rate, burst, seconds, 10, seed)
        for seed, backend in enumerate(BACKENDS)
    ]
    for worker in workers:
        assert fleet.line(worker) == "ready"
    fleet.go()
    log = sorted(
        (stamp, -1 if order is None else order, cost)
        for worker in workers
        for stamp, order, cost in json.loads(fleet.line(worker, 30))
    )
    # FIFO: in order of Redis time, the order of arrival at Redis never goes back (-1: a poll
    # that found its request admitted on its behalf already, whose order it no longer knows)
    orders = [order for _, order, _ in log if order != -1]
    assert orders == sorted(orders)
    assert len(orders) >= 0.9 * len(log)
    # the window bound, on Redis's clock: any window of w seconds admits <= burst + rate * w
    stamps = [stamp for stamp, _, _ in log]
    costs = [cost for _, _, cost in log]
    for i in range(len(log)):
        taken = 0.0
        for j in range(i, len(log)):
            taken += costs[j]
            # exact to the µs: times are doubles of µs since 1970, a quarter-µs grain
            assert taken <= burst + rate * (stamps[j] - stamps[i] + 1) / 1e6
    # saturated for ~3 s: the rate after the burst is never above the rate (exact), and close
    # to it. How close depends on how fast four processes wake up on this machine (the 1 %
    # target is measured by benchmarks/redis_limits.py, on a quiet machine: 199.86/s); on a
    # loaded one a head waiter woken late leaves tokens unspent, so the floor here is 95 %
    span = (stamps[-1] - stamps[0]) / 1e6
    achieved = (sum(costs) - burst) / span
    assert span > 2.0
    assert rate * 0.95 <= achieved <= rate


def test_four_processes_never_have_more_in_flight_than_the_limit(fleet: Fleet, name: str) -> None:
    gauge = f"{name}:gauge"  # an independent count: INCR when a call starts, DECR when it ends
    sync = redis.Redis.from_url(SHARED_URL)
    sync.set(gauge, 0, px=60_000)
    sync.close()
    workers = [
        fleet.start("permits", backend, name, 5, 2.0, 10, seed, gauge)
        for seed, backend in enumerate(BACKENDS)
    ]
    for worker in workers:
        assert fleet.line(worker) == "ready"
    fleet.go()
    highest = [json.loads(fleet.line(worker, 30)) for worker in workers]
    assert max(highest) == 5


def kill(*processes: subprocess.Popen[str]) -> float:
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        process.wait()
    return time.monotonic()


def test_permits_and_tickets_of_a_killed_process_come_back_within_the_lease(
    fleet: Fleet, name: str
) -> None:
    lease = 1.0
    holder = fleet.start("hold", "trio", name, 5, 5, lease)
    assert fleet.line(holder) == "held"
    dead = fleet.start("wait-permit", "asyncio", name, 5, lease)
    assert fleet.line(dead) == "queued"
    waiter = fleet.start("wait-permit", "trio", name, 5, lease)
    assert fleet.line(waiter) == "queued"
    killed = kill(holder, dead)  # every permit's holder, and the waiter ahead
    assert fleet.line(waiter, within=lease + 1) == "granted"
    assert time.monotonic() - killed <= lease + 1.0


def test_a_killed_waiter_loses_its_place_and_the_queue_moves_on(fleet: Fleet, name: str) -> None:
    # a token a second: the dead head waits for all 10, the next for 1 (due after 1 s)
    dead = fleet.start("wait-bucket", "asyncio", name, 1, 10, 10, 10)
    assert fleet.line(dead) == "queued"
    waiter = fleet.start("wait-bucket", "trio", name, 1, 10, 0, 1)
    assert fleet.line(waiter) == "queued"
    killed = kill(dead)
    # its ticket lapses 2 s after its last renewal at the latest (renewed every 0.5 s)
    assert fleet.line(waiter, within=3.5) == "granted"
    assert time.monotonic() - killed <= 3.0
