"""ServiceBuilder: stacks layers around a service, the first added outermost."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, final

from ._service import Service, callable_name
from .buffer import BufferLayer
from .limit.concurrency import ConcurrencyLimitLayer
from .limit.rate import RateLimitLayer
from .load_shed import LoadShedLayer
from .retry.layer import RetryLayer
from .timeout import TimeoutLayer
from .util import MapErrLayer, MapRequestLayer, MapResponseLayer

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._service import Layer
    from .retry.policy import Policy

__all__ = ["ServiceBuilder"]


def _check_layer(layer: object) -> None:
    if callable(getattr(layer, "layer", None)) and not inspect.isclass(layer):
        return
    got = type(layer).__name__
    if inspect.isclass(layer):
        hint = f"the class {layer.__name__}; create one first: {layer.__name__}(...)"
    elif isinstance(layer, Service):
        hint = f"the service {layer!r}; a service goes last: builder.service(...)"
    elif callable(layer):
        hint = f"the function {callable_name(layer)!r}; wrap it with layer_fn()"
    else:
        hint = f"{got} {layer!r}"
    raise TypeError(
        f"ServiceBuilder.layer() needs a Layer (an object with a .layer(inner) method), got {hint}"
    )


@final
class ServiceBuilder:
    """Stacks layers around a service.

    The builder is immutable: each method returns a new builder, so a partly built stack can be
    shared and extended in different ways. The first layer added is the outermost: in
    ``ServiceBuilder().layer(a).layer(b).service(s)`` a request passes ``a``, then ``b``, then
    reaches ``s``.

    Example:
        >>> svc = ServiceBuilder().map_request(str.strip).service(service_fn(echo))
    """

    __slots__ = ("_layers",)

    def __init__(self) -> None:
        self._layers: tuple[Layer[Any, Any, Any, Any], ...] = ()

    def _with(self, layer: Layer[Any, Any, Any, Any]) -> ServiceBuilder:
        builder = ServiceBuilder()
        builder._layers = (*self._layers, layer)
        return builder

    def layer(self, layer: Layer[Any, Any, Any, Any]) -> ServiceBuilder:
        """Returns a new builder with ``layer`` added inside the layers added so far.

        Raises:
            TypeError: ``layer`` has no ``layer(inner)`` method.
        """
        _check_layer(layer)
        return self._with(layer)

    def option_layer(self, layer: Layer[Any, Any, Any, Any] | None) -> ServiceBuilder:
        """Like `layer`, but None adds nothing: for layers that configuration may turn off."""
        return self if layer is None else self.layer(layer)

    def map_request(self, fn: Callable[[Any], Any]) -> ServiceBuilder:
        """Adds a `MapRequest`: ``fn`` (a plain function) transforms each request."""
        return self._with(MapRequestLayer(fn))

    def map_response(self, fn: Callable[[Any], Any]) -> ServiceBuilder:
        """Adds a `MapResponse`: ``fn`` (a plain function) transforms each response."""
        return self._with(MapResponseLayer(fn))

    def map_err(self, fn: Callable[[Exception], Exception]) -> ServiceBuilder:
        """Adds a `MapErr`: ``fn`` (a plain function) replaces each exception."""
        return self._with(MapErrLayer(fn))

    def concurrency_limit(self, max_in_flight: int) -> ServiceBuilder:
        """Adds a `ConcurrencyLimit`: at most ``max_in_flight`` requests in flight.

        Raises:
            ValueError: ``max_in_flight`` is below 1 (raised here, not when the stack is built).
        """
        return self._with(ConcurrencyLimitLayer(max_in_flight))

    def rate_limit(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        cost: Callable[[Any], float] | None = None,
        actual_cost: Callable[[Any, Any], float] | None = None,
    ) -> ServiceBuilder:
        """Adds a `RateLimit`: a token bucket of ``rate`` tokens per ``per`` seconds.

        Raises:
            ValueError: ``rate``, ``per`` or ``burst`` is not a finite number above 0 (raised
                here, not when the stack is built).
        """
        return self._with(
            RateLimitLayer(rate, per, burst=burst, cost=cost, actual_cost=actual_cost)
        )

    def timeout(self, seconds: float) -> ServiceBuilder:
        """Adds a `Timeout`: a call taking longer than ``seconds`` raises `Elapsed`.

        Raises:
            ValueError: ``seconds`` is negative or NaN (raised here).
        """
        return self._with(TimeoutLayer(seconds))

    def load_shed(self) -> ServiceBuilder:
        """Adds a `LoadShed`: `Overloaded` at once when the layers below are not ready."""
        return self._with(LoadShedLayer())

    def buffer(self, bound: int) -> ServiceBuilder:
        """Adds a `Buffer`: a queue of at most ``bound`` requests in front of a worker task."""
        return self._with(BufferLayer(bound))

    def retry(self, policy: Policy[Any]) -> ServiceBuilder:
        """Adds a `Retry`: failed calls are tried again as ``policy`` (a `RetryPolicy`) says."""
        return self._with(RetryLayer(policy))

    def service(self, inner: Service[Any, Any]) -> Service[Any, Any]:
        """Wraps ``inner`` in every layer, the first added outermost.

        Raises:
            TypeError: ``inner`` is not a `Service`, or a layer returned something else.
        """
        candidate: object = inner  # typed callers cannot get this wrong; untyped ones can
        if not isinstance(candidate, Service):
            if callable(candidate):
                raise TypeError(
                    f"ServiceBuilder.service() needs a Service, got the function "
                    f"{callable_name(candidate)!r}; wrap it with service_fn()"
                )
            raise TypeError(
                f"ServiceBuilder.service() needs a Service, got {type(candidate).__name__}"
            )
        service: Service[Any, Any] = inner
        for layer in reversed(self._layers):
            wrapped = layer.layer(service)
            if not isinstance(wrapped, Service):
                raise TypeError(f"layer {layer!r} returned {type(wrapped).__name__}, not a Service")
            service = wrapped
        return service

    @property
    def layers(self) -> tuple[Layer[Any, Any, Any, Any], ...]:
        """The layers added so far, outermost first."""
        return self._layers

    def __repr__(self) -> str:
        return f"ServiceBuilder({', '.join(map(repr, self._layers))})"
