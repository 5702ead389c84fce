"""TraceLayer: a span per call of a service of one's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from towerpy import ServiceBuilder, service_fn
from towerpy.otel import Traced, TraceLayer

from .conftest import attrs

if TYPE_CHECKING:
    from .conftest import Telemetry

pytestmark = pytest.mark.anyio


async def double(request: int) -> int:
    await anyio.sleep(1)
    return request * 2


async def test_each_call_is_a_span_with_the_layer_s_attributes(telemetry: Telemetry) -> None:
    layer = TraceLayer("search backend", attributes={"team": "search", "shards": (1, 2)})
    service = ServiceBuilder().layer(layer).service(service_fn(double))
    assert isinstance(service, Traced)
    assert [await service(1), await service(2)] == [2, 4]
    spans = telemetry.finished()
    assert [span.name for span in spans] == ["search backend", "search backend"]
    assert all(span.kind is SpanKind.INTERNAL for span in spans)
    assert attrs(spans[0]) == {"team": "search", "shards": (1, 2)}
    assert spans[0].status.status_code is StatusCode.UNSET


async def test_a_failing_call_ends_its_span_with_the_error(telemetry: Telemetry) -> None:
    async def fail(request: int) -> int:
        raise KeyError(request)

    service = TraceLayer("lookup").layer(service_fn(fail))
    with pytest.raises(KeyError):
        await service(7)
    (span,) = telemetry.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "KeyError"


async def test_a_cancelled_call_ends_its_span_without_an_error(telemetry: Telemetry) -> None:
    service = TraceLayer("slow").layer(service_fn(double))
    with anyio.move_on_after(0.5):
        await service(1)
    (span,) = telemetry.finished()
    assert span.status.status_code is StatusCode.UNSET
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_the_limits_below_wait_inside_the_span(telemetry: Telemetry) -> None:
    service = (
        ServiceBuilder().layer(TraceLayer("call")).concurrency_limit(1).service(service_fn(double))
    )
    async with anyio.create_task_group() as group:
        group.start_soon(service, 1)
        group.start_soon(service, 2)
    seconds = [
        dict(event.attributes or {})["towerpy.wait.seconds"]
        for span in telemetry.finished()
        for event in span.events
    ]
    assert seconds == [1.0]


async def test_nested_layers_nest_their_spans(telemetry: Telemetry) -> None:
    inner = TraceLayer("inner").layer(service_fn(double))
    outer = TraceLayer("outer").layer(inner)
    await outer(3)
    spans = {span.name: span for span in telemetry.finished()}
    assert spans["inner"].parent == spans["outer"].context


async def test_it_traces_without_instrument_to_the_global_provider() -> None:
    # the global provider is the API's no-op one in tests: the call goes through, untraced
    from towerpy import otel

    assert not otel.instrumented()
    assert await TraceLayer("plain").layer(service_fn(double))(4) == 8


def test_bad_names_and_attributes_are_refused_when_the_layer_is_made() -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        TraceLayer(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        TraceLayer("")
    with pytest.raises(TypeError, match=r"attributes\['obj'\] must be a str, bool, int or float"):
        TraceLayer("x", attributes={"obj": object()})
    with pytest.raises(TypeError, match="attributes must be a mapping"):
        TraceLayer("x", attributes=[("a", 1)])  # type: ignore[arg-type]
    assert repr(TraceLayer("x")) == "TraceLayer('x')"
