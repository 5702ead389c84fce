"""log_events: DEBUG for waits and retries, WARNING for give-ups, nothing per success."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest

from towerpy import Elapsed, Overloaded, RetryPolicy, ServiceBuilder, _observe, service_fn
from towerpy.monitor import log_events
from towerpy.testing import wait_all_tasks_blocked

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="towerpy")
    log_events()
    try:
        yield caplog
    finally:
        log_events(False)
    assert _observe.installed() == ()


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [(r.name, r.levelname, r.getMessage()) for r in caplog.records]


async def nap(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


async def test_calls_that_pass_at_once_log_nothing_at_any_level(
    logs: pytest.LogCaptureFixture,
) -> None:
    service = (
        ServiceBuilder().concurrency_limit(5).rate_limit(100).timeout(10).service(service_fn(nap))
    )
    for _ in range(20):
        await service(0.1)
    assert lines(logs) == []


async def test_waits_are_logged_at_debug_by_their_layer_s_logger(
    logs: pytest.LogCaptureFixture,
) -> None:
    service = ServiceBuilder().rate_limit(1, burst=1).concurrency_limit(1).service(service_fn(nap))
    async with anyio.create_task_group() as group:
        group.start_soon(service, 2.0)
        await wait_all_tasks_blocked()
        group.start_soon(service, 0.0)
    assert lines(logs) == [
        ("towerpy.limit", "DEBUG", "waited 1.000 s in rate_limit for tokens"),
        ("towerpy.limit", "DEBUG", "waited 1.000 s in concurrency_limit for permit"),
    ]


async def test_retries_are_debug_and_giving_up_a_warning(logs: pytest.LogCaptureFixture) -> None:
    async def down(request: int) -> int:
        raise ConnectionError("refused")

    from towerpy import ExponentialBackoff

    policy = RetryPolicy(3, backoff=ExponentialBackoff(base=0.25, jitter=False))
    service = ServiceBuilder().retry(policy).service(service_fn(down))
    with pytest.raises(ConnectionError):
        await service(1)
    assert lines(logs) == [
        (
            "towerpy.retry",
            "DEBUG",
            "attempt 1 failed (ConnectionError: refused); retrying in 0.250 s",
        ),
        (
            "towerpy.retry",
            "DEBUG",
            "attempt 2 failed (ConnectionError: refused); retrying in 0.500 s",
        ),
        ("towerpy.retry", "WARNING", "gave up after 3 attempts: ConnectionError: refused"),
    ]


async def test_an_error_the_policy_does_not_retry_is_no_give_up(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def bad(request: int) -> int:
        raise ValueError("bad request")

    service = (
        ServiceBuilder().retry(RetryPolicy(3, retry_on=(ConnectionError,))).service(service_fn(bad))
    )
    with pytest.raises(ValueError, match="bad request"):
        await service(1)
    assert lines(logs) == [("towerpy.retry", "DEBUG", "not retried: ValueError: bad request")]


async def test_timeouts_and_sheds_are_logged_at_debug(logs: pytest.LogCaptureFixture) -> None:
    timed = ServiceBuilder().timeout(1).service(service_fn(nap))
    with pytest.raises(Elapsed):
        await timed(5)
    shed = ServiceBuilder().load_shed().concurrency_limit(1).service(service_fn(nap))
    async with anyio.create_task_group() as group:
        group.start_soon(shed, 1)
        await wait_all_tasks_blocked()
        with pytest.raises(Overloaded):
            await shed(1)
    assert lines(logs) == [
        ("towerpy.timeout", "DEBUG", "request timed out after 1.0s"),
        ("towerpy.load_shed", "DEBUG", "request shed: the service below was not ready"),
    ]


async def test_off_again_nothing_is_logged(logs: pytest.LogCaptureFixture) -> None:
    log_events(False)
    timed = ServiceBuilder().timeout(1).service(service_fn(nap))
    with pytest.raises(Elapsed):
        await timed(5)
    assert lines(logs) == []


def test_a_circuit_opening_is_a_warning(logs: pytest.LogCaptureFixture) -> None:
    assert _observe.circuit_open is not None
    _observe.circuit_open("circuit_breaker", 30.0)
    assert lines(logs) == [
        ("towerpy.circuit_breaker", "WARNING", "circuit opened; next probe in 30.000 s")
    ]
