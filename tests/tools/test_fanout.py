"""The fan-out behind a batch: helpers start only for calls that need them, and come back later."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import service_fn
from towerpy.tools import ParallelToolRouter, ToolInvocation, ToolOutput

pytestmark = pytest.mark.anyio


async def waits(invocation: ToolInvocation) -> ToolOutput:
    await anyio.sleep(invocation.arguments.get("delay", 1))
    return ToolOutput(id=invocation.id, name=invocation.name, content=None)


def batch(size: int, **arguments: Any) -> list[ToolInvocation]:
    return [ToolInvocation(id=str(n), name="t", arguments=arguments) for n in range(size)]


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("size", [2, 3, 7])
async def test_a_batch_smaller_than_its_limit_starts_one_helper_per_call_beyond_the_first(
    size: int,
) -> None:
    import trio

    spawned = 0

    class Count(trio.abc.Instrument):
        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            nonlocal spawned
            spawned += 1

    instrument = Count()
    trio.lowlevel.add_instrument(instrument)
    try:
        await ParallelToolRouter(service_fn(waits), limit=16)(batch(size))
    finally:
        trio.lowlevel.remove_instrument(instrument)
    assert spawned == size - 1  # the calling task runs the first call itself


async def test_a_worker_that_ended_is_replaced_when_more_calls_become_ready() -> None:
    # a, b, x and y fill the limit; x and y end at 0.5 and their workers with them (nothing is
    # ready then); at 1 a's end releases c, d and e, which must all start at once
    starts: dict[str, float] = {}

    async def record(invocation: ToolInvocation) -> ToolOutput:
        starts[invocation.id] = anyio.current_time()
        return await waits(invocation)

    t0 = anyio.current_time()
    invocations = [
        ToolInvocation(id="a", name="t", arguments={"delay": 1}),
        ToolInvocation(id="b", name="t", arguments={"delay": 5}),
        ToolInvocation(id="x", name="t", arguments={"delay": 0.5}),
        ToolInvocation(id="y", name="t", arguments={"delay": 0.5}),
        *(
            ToolInvocation(id=id, name="t", arguments={"delay": 1}, depends_on=("a",))
            for id in "cde"
        ),
    ]
    await ParallelToolRouter(service_fn(record), limit=4)(invocations)
    assert {k: v - t0 for k, v in starts.items()} == {
        **dict.fromkeys("abxy", 0),
        **dict.fromkeys("cde", 1),
    }
