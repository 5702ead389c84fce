from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from towerpy import _observe, otel

if TYPE_CHECKING:
    from collections.abc import Iterator


def attrs(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes, as a plain dict."""
    return dict(span.attributes or {})


@dataclass
class Telemetry:
    """The real OpenTelemetry SDK, in memory: what towerpy recorded."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def points(self, metric: str) -> list[Any]:
        """The data points of ``metric`` (empty when it was never recorded)."""
        data = self.metrics.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found += list(item.data.data_points)
        return found

    def values(self, metric: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """Counter values (or histogram sums) by sorted attributes."""
        out: dict[tuple[tuple[str, Any], ...], Any] = {}
        for point in self.points(metric):
            key = tuple(sorted(dict(point.attributes or {}).items()))
            out[key] = point.value if hasattr(point, "value") else point.sum
        return out


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    otel.instrument(tracer_provider=provider, meter_provider=meters)
    try:
        yield Telemetry(spans, reader, provider)
    finally:
        otel.uninstrument()
        provider.shutdown()
        meters.shutdown()
    assert _observe.installed() == ()
