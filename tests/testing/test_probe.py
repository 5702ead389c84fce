from __future__ import annotations

import anyio
import pytest

from towerpy import service_fn
from towerpy.testing import InFlightProbe, mock_service

pytestmark = pytest.mark.anyio


async def sleep_for(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


async def test_probe_records_peak_and_call_times_in_virtual_time() -> None:
    probe = InFlightProbe(service_fn(sleep_for))
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for seconds in (1.0, 2.0, 3.0):
            tg.start_soon(probe, seconds)
    assert probe.peak == 3
    assert probe.in_flight == 0
    assert sorted(end - begin for begin, end in probe.calls) == [1.0, 2.0, 3.0]
    assert all(begin == start for begin, _ in probe.calls)
    assert anyio.current_time() - start == 3.0


async def test_probe_counts_failed_and_cancelled_calls() -> None:
    inner, handle = mock_service()
    probe = InFlightProbe(inner)
    with anyio.move_on_after(1):
        await probe("cancelled")
    assert probe.in_flight == 0
    assert len(probe.calls) == 1

    async def failing() -> None:
        with pytest.raises(ValueError, match="bad"):
            await probe("fails")

    async with anyio.create_task_group() as tg:
        tg.start_soon(failing)
        await handle.next_request()  # the cancelled one
        _, responder = await handle.next_request()
        assert probe.in_flight == 1
        responder.fail(ValueError("bad"))
    assert len(probe.calls) == 2
    assert probe.peak == 1
    probe.reset()
    assert (probe.calls, probe.peak, probe.started) == ([], 0, [])
