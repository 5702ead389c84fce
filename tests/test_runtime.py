from __future__ import annotations

import asyncio

import anyio
import pytest
import trio

from towerpy._backend import current_task, current_time, running_loop
from towerpy.testing import VirtualTimeEventLoop


@pytest.mark.anyio
async def test_current_time_is_anyios_clock(anyio_backend: tuple[str, object]) -> None:
    await anyio.sleep(12.5)
    assert current_time() == anyio.current_time() == 12.5


@pytest.mark.anyio
async def test_current_task_is_the_native_task(anyio_backend: tuple[str, object]) -> None:
    seen: list[object] = []

    async def child() -> None:
        seen.append(current_task())

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
    if anyio_backend[0] == "trio":
        assert current_task() is trio.lowlevel.current_task()
    else:
        assert current_task() is asyncio.current_task()
        assert running_loop() is asyncio.get_running_loop()
    assert seen[0] is not current_task()


def test_each_loop_reads_its_own_clock_in_turn_and_in_other_threads() -> None:
    async def jump_and_read(seconds: float) -> tuple[float, object]:
        await asyncio.sleep(seconds)
        return current_time(), current_task()

    async def main(seconds: float) -> tuple[float, float]:
        here, task = await jump_and_read(seconds)
        assert task is asyncio.current_task()

        def in_another_loop() -> float:
            with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
                return runner.run(jump_and_read(1.0))[0]

        there = await asyncio.to_thread(in_another_loop)
        return here, there

    for seconds in (50.0, 7.0):  # a new loop each time: the clock read is the new one's
        with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
            here, there = runner.run(main(seconds))
            assert (here, there) == (seconds, 1.0)
            assert runner.get_loop().time() == seconds
