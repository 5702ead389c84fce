"""The metrics after a run with retries, a 429, a shed and a timeout: counted exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from towerpy import Overloaded, RetryPolicy, ServiceBuilder, service_fn
from towerpy.errors import Elapsed, RateLimited
from towerpy.llm import Agent, ChatRequest, Message, ScriptedModel, ToolCall, is_retryable
from towerpy.testing import wait_all_tasks_blocked
from towerpy.tools import ToolRouter, tool

if TYPE_CHECKING:
    from .conftest import Telemetry

pytestmark = pytest.mark.anyio


def too_many_requests(request: ChatRequest) -> Message:
    raise RateLimited("429: slow down", status_code=429, retry_after=2.0, retryable=True)


def unavailable(request: ChatRequest) -> Message:
    raise ConnectionError("connection reset")


@tool(timeout=3)
async def crawl(url: str) -> str:
    """Crawls a site."""
    await anyio.sleep(10)
    return url


async def test_a_run_with_a_429_retries_and_a_timeout_counts_each(telemetry: Telemetry) -> None:
    model = ScriptedModel(
        [
            too_many_requests,
            unavailable,
            Message.assistant(tool_calls=[ToolCall(id="c", name="crawl", arguments={"url": "x"})]),
            Message.assistant("crawled nothing"),
        ]
    )
    retry_on = lambda error: is_retryable(error) or isinstance(error, ConnectionError)  # noqa: E731
    step = ServiceBuilder().retry(RetryPolicy(4, retry_on=retry_on)).service(model)
    result = await Agent(step, tools=ToolRouter([crawl])).run("go")
    assert result.output == "crawled nothing"
    assert telemetry.values("towerpy.retries") == {
        (("error.type", "towerpy.errors.RateLimited"),): 1,
        (("error.type", "ConnectionError"),): 1,
    }
    assert telemetry.values("towerpy.timeouts") == {(("error.type", "towerpy.errors.Elapsed"),): 1}
    # the 429's retry_after was honoured: the backoff after it is exactly 2 s
    (backoff,) = telemetry.points("towerpy.wait.duration")
    assert dict(backoff.attributes) == {"towerpy.layer": "retry", "towerpy.wait.reason": "backoff"}
    assert backoff.count == 2
    assert backoff.max == 2.0
    # two model calls answered: their tokens, by type
    usage = telemetry.values("gen_ai.client.token.usage")
    assert len(model.requests) == 4  # two refused, two answered
    assert result.usage is not None
    assert usage == {
        (
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "towerpy.scripted"),
            ("gen_ai.token.type", "input"),
        ): result.usage.input_tokens,
        (
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "towerpy.scripted"),
            ("gen_ai.token.type", "output"),
        ): result.usage.output_tokens,
    }
    # nothing is left in flight or waiting
    assert set(telemetry.values("towerpy.in_flight").values()) == {0}
    assert set(telemetry.values("towerpy.queued").values()) == {0}


async def test_a_shed_request_is_counted(telemetry: Telemetry) -> None:
    release = anyio.Event()

    async def hold(request: int) -> int:
        await release.wait()
        return request

    service = ServiceBuilder().load_shed().concurrency_limit(1).service(service_fn(hold))
    async with anyio.create_task_group() as group:
        group.start_soon(service, 1)
        await wait_all_tasks_blocked()
        with pytest.raises(Overloaded):
            await service(2)
        with pytest.raises(Overloaded):
            await service(3)
        release.set()
    assert telemetry.values("towerpy.sheds") == {(("towerpy.layer", "load_shed"),): 2}
    assert telemetry.points("towerpy.wait.duration") == []  # a shed request never waited


async def test_a_retry_that_gives_up_leaves_an_event(telemetry: Telemetry) -> None:
    async def down(request: int) -> int:
        raise ConnectionError("down")

    service = ServiceBuilder().retry(RetryPolicy(2)).service(service_fn(down))
    tracer = telemetry.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("call"), pytest.raises(ConnectionError):
        await service(1)
    (span,) = telemetry.finished()
    assert [event.name for event in span.events] == [
        "towerpy.retry",
        "towerpy.wait",
        "towerpy.retry.give_up",
    ]
    assert dict(span.events[-1].attributes or {}) == {
        "error.type": "ConnectionError",
        "towerpy.retry.attempt": 2,
    }
    assert telemetry.values("towerpy.retries") == {(("error.type", "ConnectionError"),): 1}


async def test_a_timeout_layer_counts_its_timeouts(telemetry: Telemetry) -> None:
    async def slow(request: float) -> float:
        await anyio.sleep(request)
        return request

    service = ServiceBuilder().timeout(1).service(service_fn(slow))
    assert await service(0.5) == 0.5
    for _ in range(3):
        with pytest.raises(Elapsed):
            await service(2)
    assert telemetry.values("towerpy.timeouts") == {(("error.type", "towerpy.errors.Elapsed"),): 3}


async def test_the_hooks_for_the_layers_to_come_report_as_documented(
    telemetry: Telemetry,
) -> None:
    # the circuit breaker calls circuit_open; the provider quota layer reports its waits
    from towerpy import _observe

    tracer = telemetry.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("call"):
        assert _observe.circuit_open is not None
        _observe.circuit_open("circuit_breaker", 30.0)
        assert _observe.wait is not None
        await _observe.wait("provider_quota", anyio.sleep(4), "pause")
        await _observe.wait("provider_quota", anyio.sleep(1))
    assert telemetry.values("towerpy.circuit.opens") == {(("towerpy.layer", "circuit_breaker"),): 1}
    (span,) = telemetry.finished()
    assert [(event.name, dict(event.attributes or {})) for event in span.events] == [
        ("towerpy.circuit.open", {"towerpy.layer": "circuit_breaker", "towerpy.retry.delay": 30.0}),
        (
            "towerpy.wait",
            {
                "towerpy.layer": "provider_quota",
                "towerpy.wait.reason": "pause",
                "towerpy.wait.seconds": 4.0,
            },
        ),
        (
            "towerpy.wait",
            {
                "towerpy.layer": "provider_quota",
                "towerpy.wait.reason": "tokens",
                "towerpy.wait.seconds": 1.0,
            },
        ),
    ]
