"""TraceLayer: a span around each call of a service of one's own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, final

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from typing_extensions import override

from .._service import Middleware, Service
from .._validate import check_mapping, check_str
from . import _names as n
from ._instrument import tracer

__all__ = ["TraceLayer", "Traced"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_SCALARS = (str, bool, int, float)


def _checked_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``attributes``, each value one OpenTelemetry accepts (checked here, not lost)."""
    if attributes is None:
        return {}
    check_mapping("attributes", attributes, what="a mapping from attribute name to value")
    checked: dict[str, Any] = {}
    for key, value in attributes.items():
        check_str("attribute name", key, empty=False)
        fits = isinstance(value, _SCALARS) or (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and all(isinstance(item, _SCALARS) for item in value)
        )
        if not fits:
            raise TypeError(
                f"attributes[{key!r}] must be a str, bool, int or float, or a sequence of "
                f"them (what OpenTelemetry records), got {type(value).__name__}"
            )
        checked[key] = (
            tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        )
    return checked


@final
class Traced(Middleware[ReqT, RespT], direct_call=True):
    """Runs each call of the inner service in a span of its own, named ``name``.

    ``call()`` starts the span (kind ``INTERNAL``, with the layer's attributes), makes it the
    current span, and calls the inner service through its ``ready()`` and ``call()``: waits in
    the limits below happen inside the span, and with `instrument` on they are its
    ``towerpy.wait`` events. An exception ends the span with status ``ERROR`` and
    ``error.type`` (the exception's class), and propagates unchanged; a cancellation ends it
    without an error. ``ready()`` is the inner service's, outside any span (a reservation made
    by an explicit ``ready()`` waits before the span starts).

    The spans go to `instrument`'s tracer provider, or the global one when towerpy is not
    instrumented: the layer traces either way.

    Args:
        inner: The service to trace.
        name: The span name.
        attributes: Attributes every span gets.
    """

    __slots__ = ("_attributes", "_name")

    def __init__(
        self, inner: Service[ReqT, RespT], name: str, attributes: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(inner)
        self._name = check_str("name", name, empty=False)
        self._attributes = _checked_attributes(attributes)

    @property
    def name(self) -> str:
        """The span name."""
        return self._name

    @override
    async def call(self, request: ReqT) -> RespT:
        span = tracer().start_span(self._name, kind=SpanKind.INTERNAL, attributes=self._attributes)
        token = context.attach(trace.set_span_in_context(span))
        try:
            result: RespT = await self.inner(request)
        except Exception as exc:
            span.set_attribute(n.ERROR_TYPE, n.error_type(exc))
            span.set_status(Status(StatusCode.ERROR, str(exc) or None))
            raise
        finally:
            context.detach(token)
            span.end()
        return result

    def __repr__(self) -> str:
        return f"Traced({self.inner!r}, name={self._name!r})"


@final
class TraceLayer:
    """Wraps services in `Traced`: a span per call, named ``name``.

    Args:
        name: The span name.
        attributes: Attributes every span gets (str, bool, int or float values, or sequences
            of them).

    Raises:
        TypeError: ``name`` is not a str, or an attribute's value is not one OpenTelemetry
            records.
        ValueError: ``name`` is empty.

    Example:
        >>> search = ServiceBuilder().layer(TraceLayer("search")).timeout(10).service(backend)
    """

    __slots__ = ("_attributes", "_name")

    def __init__(self, name: str, *, attributes: Mapping[str, Any] | None = None) -> None:
        self._name = check_str("name", name, empty=False)
        self._attributes = _checked_attributes(attributes)

    def layer(self, inner: Service[ReqT, RespT]) -> Traced[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `Traced`."""
        return Traced(inner, self._name, self._attributes)

    def __repr__(self) -> str:
        return f"TraceLayer({self._name!r})"
