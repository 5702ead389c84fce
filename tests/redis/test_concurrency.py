"""RedisConcurrencyLimiter behind ConcurrencyLimitLayer, on a real server, on both backends."""

from __future__ import annotations

import gc
import logging
from typing import Any

import anyio
import pytest

from towerpy import ConcurrencyLimitLayer, ServiceClosed, service_fn
from towerpy.limit import ConcurrencyBackend
from towerpy.redis import RedisConcurrencyLimiter, RedisConcurrencyStatistics, _lua

from .support import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


async def echo(request: int) -> int:
    return request


async def holders(client: Any, limiter: RedisConcurrencyLimiter) -> int:
    return int(await client.zcard(limiter._keys[0]))


async def queued(client: Any, limiter: RedisConcurrencyLimiter) -> int:
    return int(await client.zcard(limiter._keys[1]))


async def test_it_is_a_concurrency_backend(client: Any, name: str) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 2)
    assert isinstance(limiter, ConcurrencyBackend)
    assert limiter.statistics() == RedisConcurrencyStatistics(2, 0, 0, 0, 0, 0)
    assert limiter.acquire_nowait() is None  # Redis decides: the layer calls acquire()


async def test_the_bound_holds_across_objects_and_waiters_go_in_arrival_order(
    client: Any, name: str
) -> None:
    first = RedisConcurrencyLimiter(client, name, 2)
    second = RedisConcurrencyLimiter(client, name, 2)  # another process, say
    order: list[int] = []

    async def take(i: int) -> None:
        permit = await second.acquire()
        order.append(i)
        second.release(permit)

    async with first, second:
        a, b = await first.acquire(), await first.acquire()
        assert await second.try_acquire() is None
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(take, i)

                def queued_behind(n: int = i + 1) -> bool:
                    return second.statistics().waiting_here == n

                await eventually(queued_behind)
            first.release(a)  # one permit free at a time: it goes down the queue in order
        first.release(b)
        assert order == [0, 1, 2]

        async def all_back() -> bool:
            return await holders(client, first) == 0

        await eventually(all_back)


async def test_ready_reserves_a_permit_and_call_runs_on_it(client: Any, name: str) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    inside: list[int] = []

    async def handler(request: int) -> int:
        inside.append(await holders(client, limiter))
        return request

    service = ConcurrencyLimitLayer(limiter=limiter).layer(service_fn(handler))
    async with limiter:
        await service.ready()
        assert await holders(client, limiter) == 1
        assert limiter.statistics().held_here == 1
        assert await service.call(7) == 7
        assert inside == [1]  # the reserved permit, not a second one

        async def released() -> bool:
            return await holders(client, limiter) == 0

        await eventually(released)


async def test_an_unused_reservation_comes_back_when_its_task_ends(client: Any, name: str) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    service = ConcurrencyLimitLayer(limiter=limiter).layer(service_fn(echo))
    async with limiter:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.ready)
        gc.collect()

        async def released() -> bool:
            return await holders(client, limiter) == 0

        await eventually(released)
        assert limiter.statistics().held_here == 0


async def test_a_waiter_cancelled_in_the_queue_holds_nothing_and_the_next_moves_up(
    client: Any, name: str
) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    got: list[object] = []
    async with limiter:
        held = await limiter.acquire()
        async with anyio.create_task_group() as tg:
            first = anyio.CancelScope()

            async def leave() -> None:
                with first:
                    await limiter.acquire()

            async def stay() -> None:
                got.append(await limiter.acquire())

            tg.start_soon(leave)
            await eventually(lambda: limiter.statistics().waiting_here == 1)
            tg.start_soon(stay)
            await eventually(lambda: limiter.statistics().waiting_here == 2)
            first.cancel()
            await eventually(lambda: limiter.statistics().waiting_here == 1)

            async def one_left() -> bool:
                return await queued(client, limiter) == 1

            await eventually(one_left)
            limiter.release(held)
        assert len(got) == 1
        assert await holders(client, limiter) == 1  # the second waiter's, nobody else's
        limiter.release(got[0])


async def test_a_release_wakes_a_waiter_of_another_process_promptly(client: Any, name: str) -> None:
    holder = RedisConcurrencyLimiter(client, name, 1)
    waiter = RedisConcurrencyLimiter(client, name, 1)
    async with holder, waiter:
        permit = await holder.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.acquire)
            await eventually(lambda: waiter.statistics().waiting_here == 1)
            start = anyio.current_time()
            holder.release(permit)
        # a release, a message and a grant: round trips (a few ms), not the renewal period
        # (0.5 s), which would be the only wake-up without the message
        assert anyio.current_time() - start < 0.4


async def test_releasing_a_permit_twice_is_an_error(client: Any, name: str) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    async with limiter:
        permit = await limiter.acquire()
        limiter.release(permit)
        with pytest.raises(RuntimeError, match="not held"):
            limiter.release(permit)


async def test_leaving_the_block_gives_back_permits_and_withdraws_tickets(
    client: Any, name: str
) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1)
    closed: list[BaseException] = []

    async def wait() -> None:
        try:
            await limiter.acquire()
        except ServiceClosed as exc:
            closed.append(exc)

    async with anyio.create_task_group() as tg, limiter:
        permit = await limiter.acquire()
        tg.start_soon(wait)
        await eventually(lambda: limiter.statistics().waiting_here == 1)
    assert len(closed) == 1
    assert await holders(client, limiter) == 0
    assert await queued(client, limiter) == 0
    limiter.release(permit)  # a late release after the close is harmless
    with pytest.raises(ServiceClosed, match="async with limiter"):
        await limiter.acquire()


async def test_a_permit_held_longer_than_its_lease_is_renewed(client: Any, name: str) -> None:
    limiter = RedisConcurrencyLimiter(client, name, 1, lease=0.6, op_timeout=0.3)
    other = RedisConcurrencyLimiter(client, name, 1, lease=0.6, op_timeout=0.3)
    async with limiter, other:
        permit = await limiter.acquire()
        await anyio.sleep(1.0)  # 1.7 leases: renewed every 0.2 s
        assert await other.try_acquire() is None
        limiter.release(permit)


def test_bad_arguments_are_refused_at_construction() -> None:
    import redis.asyncio

    client = redis.asyncio.Redis()
    with pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        RedisConcurrencyLimiter(client, "x", 0)
    with pytest.raises(TypeError, match="max_in_flight must be an int"):
        RedisConcurrencyLimiter(client, "x", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease must be a finite number > 0"):
        RedisConcurrencyLimiter(client, "x", 1, lease=-1)
    with pytest.raises(ValueError, match=r"op_timeout \(1s\) must be at most half the lease"):
        RedisConcurrencyLimiter(client, "x", 1, lease=1)
    assert repr(RedisConcurrencyLimiter(client, "x", 3)) == (
        "RedisConcurrencyLimiter('x', max_in_flight=3)"
    )


class SlowRenewals:
    """A limiter's connection whose renewals take 0.2 s to reach Redis (a slow pool, say)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.renewing = anyio.Event()
        self.renewed = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def run(self, script: str, keys: Any, args: Any) -> Any:
        if script is not _lua.PERMIT_RENEW or self.renewed.is_set():
            return await self.conn.run(script, keys, args)
        self.renewing.set()
        await anyio.sleep(0.2)
        try:
            return await self.conn.run(script, keys, args)
        finally:
            self.renewed.set()


async def test_a_renewal_overtaken_by_a_release_never_brings_the_permit_back(
    client: Any, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "towerpy.redis")
    limiter = RedisConcurrencyLimiter(client, name, 1, lease=3, op_timeout=0.5)  # renewed / 0.5 s
    slow = limiter._shared.conn = SlowRenewals(limiter._shared.conn)
    async with limiter:
        permit = await limiter.acquire()
        await slow.renewing.wait()  # a renewal of this permit is on its way, slowly
        limiter.release(permit)
        await slow.renewed.wait()
        assert await holders(client, limiter) == 0  # not taken again for another lease (3 s)
        assert await limiter.try_acquire() is not None
    assert not [r for r in caplog.records if "asserted again" in r.getMessage()]
