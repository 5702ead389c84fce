"""A minimal limiter built on towerpy's reservation mechanism, the pattern every limit follows."""

from __future__ import annotations

import gc
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from typing_extensions import override

from towerpy import Service, lowlevel
from towerpy.testing import wait_all_tasks_blocked

if TYPE_CHECKING:
    from collections.abc import Callable

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


class Counter:
    """At most ``limit`` permits out at once; waiters are served first-come first-served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.available = limit
        self.waiters: deque[anyio.Event] = deque()

    async def acquire(self) -> int:
        if self.available > 0 and not self.waiters:
            self.available -= 1
            return 1
        event = anyio.Event()
        self.waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # a permit was handed over just as we left: pass it on
                self.release(1)
            else:
                self.waiters.remove(event)
            raise
        return 1

    async def try_acquire(self) -> int | None:
        if self.available > 0 and not self.waiters:
            self.available -= 1
            return 1
        return None

    def release(self, _permit: int) -> None:
        if self.waiters:
            self.waiters.popleft().set()  # hand the permit straight to the first waiter
        else:
            self.available += 1
            assert self.available <= self.limit, "a permit was given back twice"


class ReferenceLimit(Service[ReqT, RespT], direct_call=True):
    def __init__(self, inner: Service[ReqT, RespT], limit: int) -> None:
        self.inner = inner
        self.counter = Counter(limit)

    @override
    async def ready(self) -> None:
        c = self.counter
        await lowlevel.reserve(self, c.acquire, c.release, self.inner)

    @override
    async def try_ready(self) -> bool:
        c = self.counter
        return await lowlevel.try_reserve(self, c.try_acquire, c.release, self.inner)

    @override
    async def call(self, request: ReqT) -> RespT:
        permit = await lowlevel.take_or_acquire(self, self.counter.acquire)
        try:
            return await self.inner(request)
        finally:
            self.counter.release(permit)

    @property
    def in_use(self) -> int:
        return self.counter.limit - self.counter.available


def held(service: Any) -> bool:
    return lowlevel.held(service) is not None


async def settle(until: Callable[[], bool] | None = None) -> None:
    """Lets the releases queued by finished tasks run; collects garbage if that is not enough.

    A finished task is freed by reference counting, so its reservations are usually back by the
    time every task is blocked. Only when ``until()`` is still false (or without ``until``) does
    this run a full ``gc.collect()``, which is slow once the test session's heap is large.
    """
    await wait_all_tasks_blocked()
    if until is not None and until():
        return
    gc.collect()
    await wait_all_tasks_blocked()
