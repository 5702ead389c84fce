"""Every wait in a towerpy limit is a towerpy.wait event, with its exact virtual-time length."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from towerpy import (
    Buffer,
    ConcurrencyLimiter,
    ExponentialBackoff,
    RetryPolicy,
    Service,
    ServiceBuilder,
    TokenBucket,
    service_fn,
)
from towerpy.otel import TraceLayer
from towerpy.testing import wait_all_tasks_blocked

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from .conftest import Telemetry

pytestmark = pytest.mark.anyio


def waits(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == "towerpy.wait"]


async def sleeper(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


def by_request(telemetry: Telemetry) -> dict[str, list[dict[str, Any]]]:
    return {str((span.attributes or {})["request"]): waits(span) for span in telemetry.finished()}


async def call_all(telemetry: Telemetry, service: Service[float, Any], *requests: float) -> None:
    """Calls ``service`` with each request at once, in order, each in a span of its own."""
    tracer = telemetry.tracer_provider.get_tracer("the caller")

    async def one(request: float) -> None:
        with tracer.start_as_current_span("call", attributes={"request": str(request)}):
            await service(request)

    async with anyio.create_task_group() as group:
        for request in requests:
            group.start_soon(one, request)
            await wait_all_tasks_blocked()  # each in line before the next


async def test_a_wait_for_a_concurrency_permit_is_an_event_of_its_exact_length(
    telemetry: Telemetry,
) -> None:
    inner = ServiceBuilder().concurrency_limit(1).service(service_fn(sleeper))
    await call_all(telemetry, inner, 2.0, 3.0, 1.0)
    assert by_request(telemetry) == {
        "2.0": [],
        "3.0": [
            {
                "towerpy.layer": "concurrency_limit",
                "towerpy.wait.reason": "permit",
                "towerpy.wait.seconds": 2.0,
            }
        ],
        "1.0": [
            {
                "towerpy.layer": "concurrency_limit",
                "towerpy.wait.reason": "permit",
                "towerpy.wait.seconds": 5.0,
            }
        ],
    }
    (histogram,) = telemetry.points("towerpy.wait.duration")
    assert dict(histogram.attributes) == {
        "towerpy.layer": "concurrency_limit",
        "towerpy.wait.reason": "permit",
    }
    assert (histogram.count, histogram.sum, histogram.min, histogram.max) == (2, 7.0, 2.0, 5.0)
    assert telemetry.values("towerpy.queued") == {(("towerpy.layer", "concurrency_limit"),): 0}


async def test_a_wait_for_rate_tokens_is_an_event_of_its_exact_length(
    telemetry: Telemetry,
) -> None:
    inner = ServiceBuilder().rate_limit(2, per=1.0, burst=1).service(service_fn(sleeper))
    await call_all(telemetry, inner, 0.0, 0.25, 0.125)
    assert by_request(telemetry) == {
        "0.0": [],
        "0.25": [
            {
                "towerpy.layer": "rate_limit",
                "towerpy.wait.reason": "tokens",
                "towerpy.wait.seconds": 0.5,
            }
        ],
        "0.125": [
            {
                "towerpy.layer": "rate_limit",
                "towerpy.wait.reason": "tokens",
                "towerpy.wait.seconds": 1.0,
            }
        ],
    }


async def test_a_shared_limiter_reports_each_service_s_waits(telemetry: Telemetry) -> None:
    permits = ConcurrencyLimiter(1)
    bucket = TokenBucket(1, burst=1)
    a = ServiceBuilder().concurrency_limit(limiter=permits).service(service_fn(sleeper))
    b = (
        ServiceBuilder()
        .rate_limit(limiter=bucket)
        .concurrency_limit(limiter=permits)
        .service(service_fn(sleeper))
    )
    await call_all(telemetry, a, 4.0)
    await call_all(telemetry, a, 1.0, 0.5)
    assert [w["towerpy.wait.seconds"] for w in by_request(telemetry)["0.5"]] == [1.0]
    telemetry.spans.clear()
    await call_all(telemetry, b, 0.5, 0.25)
    assert by_request(telemetry) == {
        "0.5": [],
        "0.25": [
            {
                "towerpy.layer": "rate_limit",
                "towerpy.wait.reason": "tokens",
                "towerpy.wait.seconds": 1.0,
            },
        ],
    }


async def test_a_buffered_request_s_time_in_the_queue_is_an_event(telemetry: Telemetry) -> None:
    limited = ServiceBuilder().concurrency_limit(1).service(service_fn(sleeper))
    async with Buffer(limited, bound=8) as buffer:
        await call_all(telemetry, buffer, 2.0, 1.0, 0.5)
    # a buffered request always waits for the worker to grant it: the first for no time
    assert by_request(telemetry) == {
        "2.0": [
            {"towerpy.layer": "buffer", "towerpy.wait.reason": "queue", "towerpy.wait.seconds": 0.0}
        ],
        "1.0": [
            {"towerpy.layer": "buffer", "towerpy.wait.reason": "queue", "towerpy.wait.seconds": 2.0}
        ],
        "0.5": [
            {"towerpy.layer": "buffer", "towerpy.wait.reason": "queue", "towerpy.wait.seconds": 3.0}
        ],
    }
    # the worker waited for the permit in its own task: measured, on no request's span
    durations = {
        dict(point.attributes)["towerpy.layer"]: (point.count, point.sum)
        for point in telemetry.points("towerpy.wait.duration")
    }
    assert durations == {"buffer": (3, 5.0), "concurrency_limit": (2, 3.0)}


async def test_a_retry_s_backoff_is_a_wait_and_each_retry_an_event(
    telemetry: Telemetry,
) -> None:
    failures = [ConnectionError("reset"), ConnectionError("reset again")]

    async def flaky(request: float) -> float:
        if failures:
            raise failures.pop(0)
        return request

    policy = RetryPolicy(3, backoff=ExponentialBackoff(base=0.5, jitter=False))
    service = ServiceBuilder().retry(policy).service(service_fn(flaky))
    assert await TraceLayer("call", attributes={"request": "1"}).layer(service)(1.0) == 1.0
    (span,) = telemetry.finished()
    assert [(event.name, dict(event.attributes or {})) for event in span.events] == [
        (
            "towerpy.retry",
            {
                "error.type": "ConnectionError",
                "towerpy.retry.attempt": 1,
                "towerpy.retry.delay": 0.5,
            },
        ),
        (
            "towerpy.wait",
            {
                "towerpy.layer": "retry",
                "towerpy.wait.reason": "backoff",
                "towerpy.wait.seconds": 0.5,
            },
        ),
        (
            "towerpy.retry",
            {
                "error.type": "ConnectionError",
                "towerpy.retry.attempt": 2,
                "towerpy.retry.delay": 1.0,
            },
        ),
        (
            "towerpy.wait",
            {
                "towerpy.layer": "retry",
                "towerpy.wait.reason": "backoff",
                "towerpy.wait.seconds": 1.0,
            },
        ),
    ]
    assert anyio.current_time() == 1.5


async def test_capacity_taken_at_once_is_no_wait(telemetry: Telemetry) -> None:
    permits = ConcurrencyLimiter(2)
    bucket = TokenBucket(10)
    with telemetry.tracer_provider.get_tracer("t").start_as_current_span("direct") as span:
        await permits.acquire()  # free: taken without waiting
        await bucket.acquire(3)
        assert span.is_recording()
    (finished,) = telemetry.finished()
    assert finished.events == ()
    assert telemetry.points("towerpy.wait.duration") == []


async def test_a_task_cancelled_while_waiting_reports_the_time_it_waited(
    telemetry: Telemetry,
) -> None:
    permits = ConcurrencyLimiter(1)
    tracer = telemetry.tracer_provider.get_tracer("t")
    await permits.acquire()

    async def waiter() -> None:
        with tracer.start_as_current_span("waiter"):
            await permits.acquire()

    with anyio.move_on_after(1.5):
        await waiter()
    (span,) = telemetry.finished()
    assert waits(span) == [
        {
            "towerpy.layer": "concurrency_limit",
            "towerpy.wait.reason": "permit",
            "towerpy.wait.seconds": 1.5,
        }
    ]
    assert permits.statistics().waiting == 0
    assert telemetry.values("towerpy.queued") == {(("towerpy.layer", "concurrency_limit"),): 0}


async def test_a_provider_quota_pause_after_a_429_is_a_wait_event_of_its_length(
    telemetry: Telemetry,
) -> None:
    from towerpy.errors import RateLimited
    from towerpy.llm import ChatRequest, Message, ProviderQuotaLayer, StepOutcome

    answers: list[BaseException | None] = [
        RateLimited("HTTP 429", retry_after=3.0, retryable=True),
        None,
    ]

    async def step(request: ChatRequest) -> StepOutcome:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return StepOutcome(messages=[*request.messages, Message.assistant("ok")], done=True)

    model = ProviderQuotaLayer(requests=100, per=1.0, learn=False).layer(service_fn(step))
    tracer = telemetry.tracer_provider.get_tracer("the caller")
    with tracer.start_as_current_span("first"), pytest.raises(RateLimited):
        await model(ChatRequest(messages=[Message.user("a")]))
    with tracer.start_as_current_span("second"):
        await model(ChatRequest(messages=[Message.user("b")]))
    spans = {span.name: waits(span) for span in telemetry.finished()}
    assert spans["first"] == []

    # the pause itself, then the token the emptied bucket gives back a hundredth later
    pause, *rest = spans["second"]
    assert pause == {
        "towerpy.layer": "provider_quota",
        "towerpy.wait.reason": "pause",
        "towerpy.wait.seconds": pytest.approx(3.0),
    }
    assert [wait["towerpy.layer"] for wait in rest] == ["rate_limit"]
