from __future__ import annotations

import asyncio
import functools
import time

import anyio
import pytest

from towerpy.testing import VirtualTimeEventLoop, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def test_an_hour_of_sleep_takes_no_real_time() -> None:
    real_start = time.monotonic()
    start = anyio.current_time()
    await anyio.sleep(3600)
    assert anyio.current_time() - start == 3600
    assert time.monotonic() - real_start < 30  # generous: only guards against real sleeping


async def test_timers_fire_at_their_exact_virtual_deadlines() -> None:
    fired: list[float] = []
    start = anyio.current_time()

    async def at(delay: float) -> None:
        await anyio.sleep(delay)
        fired.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        for delay in (0.3, 0.1, 0.2, 0.7):
            tg.start_soon(at, delay)
    assert fired == [0.1, 0.2, 0.3, 0.7]


async def test_fail_after_raises_at_the_deadline() -> None:
    start = anyio.current_time()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(2.5):
            await anyio.sleep_forever()
    assert anyio.current_time() - start == 2.5


async def test_wait_all_tasks_blocked_does_not_move_the_clock() -> None:
    start = anyio.current_time()
    woke = anyio.Event()

    async def sleeper() -> None:
        await anyio.sleep(10)
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await wait_all_tasks_blocked()
        assert anyio.current_time() == start
        assert not woke.is_set()
    assert anyio.current_time() - start == 10


async def test_worker_threads_still_complete() -> None:
    assert await anyio.to_thread.run_sync(lambda: 40 + 2) == 42


def test_virtual_loop_runs_plain_asyncio_and_jumps() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(86_400 * 3)  # longer than asyncio's longest select timeout
        return loop.time() - start

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        assert runner.run(main()) == 86_400 * 3


@pytest.mark.timeout(10)
async def test_a_sleep_of_a_billion_seconds_returns_at_its_deadline() -> None:
    # past 2**24 s (about 194 days) of virtual time, a timer due now once never ran: the loop spun
    start = anyio.current_time()
    await anyio.sleep(10**9)
    assert anyio.current_time() - start == 10**9
    with anyio.move_on_after(0.25) as scope:  # short timers still fire exactly, that late
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 10**9 + 0.25


def _loop_starting_at(seconds: float) -> VirtualTimeEventLoop:
    loop = VirtualTimeEventLoop()
    loop.jump(seconds)
    return loop


@pytest.mark.timeout(10)
def test_a_clock_that_starts_late_runs_its_timers() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        woke: list[float] = []
        loop.call_at(start, lambda: woke.append(loop.time() - start))  # due at once
        await asyncio.sleep(0.5)
        woke.append(loop.time() - start)
        await asyncio.sleep(86_400 * 400)
        woke.append(loop.time() - start)
        return woke

    for late in (2.0**24, 2.0**40):
        with asyncio.Runner(loop_factory=functools.partial(_loop_starting_at, late)) as runner:
            assert runner.run(main()) == [0, 0.5, 0.5 + 86_400 * 400]


def test_jump_moves_the_clock_forward_only() -> None:
    loop = VirtualTimeEventLoop()
    try:
        loop.jump(5)
        assert loop.time() == 5
        with pytest.raises(ValueError, match="seconds must be a number of seconds >= 0"):
            loop.jump(-1)
        with pytest.raises(TypeError, match="seconds must be a number of seconds >= 0"):
            loop.jump("1")  # type: ignore[arg-type]
    finally:
        loop.close()


@pytest.mark.real_clock
async def test_real_clock_marker_runs_on_the_real_clock(anyio_backend_name: str) -> None:
    if anyio_backend_name == "asyncio":
        assert not isinstance(asyncio.get_running_loop(), VirtualTimeEventLoop)
    else:
        import trio

        assert type(trio.lowlevel.current_clock()).__name__ != "MockClock"


@pytest.mark.real_clock
async def test_on_the_real_clock_wait_all_tasks_blocked_returns_once_every_task_is_blocked() -> (
    None
):
    done: list[int] = []
    events = [anyio.Event() for _ in range(30)]
    forever = anyio.Event()

    async def relay(i: int) -> None:
        await events[i].wait()
        done.append(i)
        if i + 1 < len(events):
            events[i + 1].set()  # wakes the next task: one loop pass each
        await forever.wait()

    async with anyio.create_task_group() as tg:
        for i in range(len(events)):
            tg.start_soon(relay, i)
        await wait_all_tasks_blocked()
        assert done == []
        events[0].set()
        await wait_all_tasks_blocked()
        assert done == list(range(len(events)))  # not before the whole chain has run
        forever.set()
