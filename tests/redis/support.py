"""Helpers for the tests of towerpy.redis: clients, servers, bounded polling.

The shared server is ``TOWERPY_REDIS_URL`` (``.ci/run`` sets it), else 127.0.0.1:6379. Tests
never flush it: each uses names of its own (the ``name`` fixture), and checks afterwards that
every key under them has a TTL, then deletes them. A test that stops, restarts or pauses Redis
starts a private ``redis-server --save ""`` on a free port (the ``private_redis`` fixture).

Every test here talks to a real server, so it runs on the real clock: a virtual clock would
jump past ``op_timeout`` while a reply is on its way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import anyio

import redis

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

SHARED_URL = os.environ.get("TOWERPY_REDIS_URL", "redis://127.0.0.1:6379/0")


def leftover_keys_without_ttl(url: str, names: list[str]) -> list[str]:
    """Returns the keys under ``names`` that have no TTL, and deletes every key under them."""
    sync = redis.Redis.from_url(url)
    try:
        without_ttl = []
        for name in names:
            for key in sync.scan_iter(match=f"*{name}*", count=1000):
                if sync.pttl(key) == -1:
                    without_ttl.append(key.decode())
                sync.delete(key)
        return without_ttl
    finally:
        sync.close()


@contextlib.asynccontextmanager
async def open_client(url: str, **options: Any) -> AsyncIterator[Any]:
    """A client for ``url`` on the running backend: redis.asyncio on asyncio, coredis on trio."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import coredis

        async with coredis.Redis.from_url(url, **options) as client:
            yield client
    else:
        import redis.asyncio

        asyncio_client = redis.asyncio.Redis.from_url(url, **options)
        try:
            yield asyncio_client
        finally:
            await asyncio_client.aclose()


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = 3.0, step: float = 0.01
) -> float:
    """Waits until ``check()`` holds; returns the seconds that took.

    Redis and other processes offer no hook to wait on: their state is polled, bounded.

    Raises:
        AssertionError: It still did not hold after ``within`` seconds.
    """
    start = time.monotonic()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"still not true after {within}s")
        await anyio.sleep(step)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of this test's own, which it may stop, restart and pause."""

    def __init__(self, directory: str) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed: `.ci/run` installs it (apt-get install "
                "redis-server); fault tests need a server of their own to stop"
            )
        self._executable = executable
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                self._executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sync = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if sync.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        finally:
            sync.close()

    def kill(self) -> None:
        """Stops the server at once, as a crash would: its data is gone."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # in case it was paused
            self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def sync(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)
