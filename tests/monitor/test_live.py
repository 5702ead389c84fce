"""The live view, rendered to text at fixed moments of a run in virtual time."""

from __future__ import annotations

import io

import anyio
import pytest
from rich.console import Console

from towerpy import ServiceBuilder, TokenBucket, monitor, service_fn
from towerpy.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def work(request: int) -> int:
    await anyio.sleep(1.5)
    return request


AT_HALF_A_SECOND = """\
towerpy · 0.5 s
limit        in flight  waiting      tokens
model calls                   3  0.5/1 +1/s
workers            1/1        0
runs ░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░ 0/4   0%   elapsed 0.5 s   ETA ?
waited  nothing yet
retries 0   timeouts 0   shed 0
"""

AT_TWO_AND_A_HALF_SECONDS = """\
towerpy · 2.5 s
limit        in flight  waiting      tokens
model calls                   1  0.5/1 +1/s
workers            1/1        1
runs ███████░░░░░░░░░░░░░░░░░░░░░░░ 1/4  25%   elapsed 2.5 s   ETA 7.5 s
waited  concurrency_limit 1x 0.5 s, rate_limit 2x 3.0 s
retries 0   timeouts 0   shed 0
"""

AT_THE_END = """\
towerpy · 6.0 s
limit        in flight  waiting      tokens
model calls                   0  1.0/1 +1/s
workers            0/1        0
runs ██████████████████████████████ 4/4 100%   elapsed 6.0 s   ETA 0.0 s
waited  concurrency_limit 3x 3.0 s, rate_limit 3x 6.0 s
retries 0   timeouts 0   shed 0
"""


async def test_the_view_shows_limits_progress_and_waits_as_the_run_goes() -> None:
    # four runs through a rate limit of 1/s (burst 1) and one worker taking 1.5 s each:
    # run n gets its token at n s, and its worker when run n-1 is done
    bucket = TokenBucket(1, burst=1)
    service = (
        ServiceBuilder().rate_limit(limiter=bucket).concurrency_limit(1).service(service_fn(work))
    )
    drawn = io.StringIO()
    console = Console(file=drawn, width=80, color_system=None)
    frames: dict[float, str] = {}
    view = monitor.live({"model calls": bucket, "workers": service}, total=4, console=console)
    async with view:

        async def run(n: int) -> None:
            await service(n)
            view.advance()

        async def look() -> None:
            for moment in (0.5, 2.5):
                await anyio.sleep_until(moment)
                frames[moment] = view.text()

        async with anyio.create_task_group() as group:
            group.start_soon(look)
            for n in range(4):
                group.start_soon(run, n)
                await wait_all_tasks_blocked()
    assert frames == {0.5: AT_HALF_A_SECOND, 2.5: AT_TWO_AND_A_HALF_SECONDS}
    assert view.text() == AT_THE_END
    # a console that is not a terminal gets the last drawing only, when the block ends
    assert "\n".join(line.rstrip() for line in drawn.getvalue().splitlines()) + "\n" == AT_THE_END


async def test_without_a_total_the_runs_are_counted() -> None:
    bucket = TokenBucket(5, burst=5)
    view = monitor.live(bucket)
    view.advance(2)
    assert view.text().splitlines()[-3] == "runs done 2   elapsed 0.0 s"


async def test_the_view_counts_retries_timeouts_and_sheds_while_it_is_open() -> None:
    from towerpy import Elapsed, Overloaded, RetryPolicy

    async def fails(request: int) -> int:
        raise ConnectionError("down")

    async def holds(request: int) -> int:
        await anyio.sleep(10)
        return request

    retried = ServiceBuilder().retry(RetryPolicy(3)).service(service_fn(fails))
    timed = ServiceBuilder().timeout(1).service(service_fn(holds))
    shed = ServiceBuilder().load_shed().concurrency_limit(1).service(service_fn(holds))
    view = monitor.live(shed, console=Console(file=io.StringIO()))
    async with view:
        with pytest.raises(ConnectionError):
            await retried(1)
        with pytest.raises(Elapsed):
            await timed(1)
        async with anyio.create_task_group() as group:
            group.start_soon(shed, 1)
            await wait_all_tasks_blocked()
            with pytest.raises(Overloaded):
                await shed(2)
            group.cancel_scope.cancel()
    lines = view.text().splitlines()
    assert lines[2] == "load shed (1 shed)"
    assert lines[3] == "concurrency limit         0/1        0"
    assert lines[-1] == "retries 2   timeouts 1   shed 1"
    # closed: it hears nothing more
    with pytest.raises(Elapsed):
        await timed(1)
    assert view.text().splitlines()[-1] == "retries 2   timeouts 1   shed 1"


def test_bad_arguments_are_refused_when_the_view_is_made() -> None:
    bucket = TokenBucket(1)
    with pytest.raises(ValueError, match="no limit found"):
        monitor.live(service_fn(work))
    with pytest.raises(ValueError, match="total"):
        monitor.live(bucket, total=0)
    with pytest.raises(ValueError, match="refresh"):
        monitor.live(bucket, refresh=0)
    with pytest.raises(TypeError, match="label"):
        monitor.live({1: bucket})


async def test_a_view_runs_once_at_a_time() -> None:
    view = monitor.live(TokenBucket(1), console=Console(file=io.StringIO()))
    async with view:
        with pytest.raises(RuntimeError, match="already running"):
            await view.__aenter__()
    async with view:  # again, afterwards
        pass
