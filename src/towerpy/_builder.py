"""ServiceBuilder: stacks layers around a service, the first added outermost."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Generic, Self, final, overload

from typing_extensions import TypeVar as DefaultTypeVar

from ._priority import DEFAULT_AGING
from ._service import Service, callable_name
from .buffer import BufferLayer
from .limit.concurrency import ConcurrencyLimitLayer, _limiter_from
from .limit.keyed import KeyedConcurrencyLimitLayer
from .limit.rate import RateLimitLayer, _bucket_from
from .load_shed import LoadShedLayer
from .resilience.circuit_breaker import CircuitBreakerLayer
from .resilience.fallback import FallbackLayer
from .resilience.hedge import HedgeLayer, _always
from .retry.layer import RetryLayer
from .timeout import TimeoutLayer
from .util import MapErrLayer, MapRequestLayer, MapResponseLayer

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from ._service import KeepsTypesLayer, Layer
    from ._validate import ExceptionMatcher
    from .limit.protocols import ConcurrencyBackend, RateBackend
    from .llm.messages import ChatRequest
    from .resilience.breaker import CircuitBreaker
    from .retry.policy import Policy

__all__ = ["ServiceBuilder", "Unchanged"]


@final
class Unchanged:
    """A `ServiceBuilder` type parameter: the layers added so far leave this type as it is.

    ``ServiceBuilder()`` is a ``ServiceBuilder[Unchanged, Unchanged]``: its ``service(s)`` has
    the request and response types of ``s``. ``.map_request(parse)`` with ``parse: str -> Job``
    makes it a ``ServiceBuilder[str, Unchanged, Job, Unchanged]``: the built service takes a
    ``str``, the wrapped one a ``Job``. Only type checkers see it; no value has this type.
    """

    __slots__ = ()


# The built service's types, then the wrapped service's: each side (requests, responses) is
# either Unchanged in both places (the layers keep whatever the service has) or concrete in both.
ReqT = DefaultTypeVar("ReqT", default=Unchanged)
RespT = DefaultTypeVar("RespT", default=Unchanged)
InnerReqT = DefaultTypeVar("InnerReqT", default=ReqT)
InnerRespT = DefaultTypeVar("InnerRespT", default=RespT)
# Any when nothing says (an unannotated lambda given to map_request: its parameter is Any)
_A = DefaultTypeVar("_A", default=Any)
_B = DefaultTypeVar("_B", default=Any)
_C = DefaultTypeVar("_C", default=Any)
_D = DefaultTypeVar("_D", default=Any)
_U = Unchanged


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
class ServiceBuilder(Generic[ReqT, RespT, InnerReqT, InnerRespT]):
    """Stacks layers around a service.

    The builder is immutable: each method returns a new builder, so a partly built stack can be
    shared and extended in different ways. The first layer added is the outermost: in
    ``ServiceBuilder().layer(a).layer(b).service(s)`` a request passes ``a``, then ``b``, then
    reaches ``s``.

    It is typed: ``service(s)`` returns a ``Service`` of the types of ``s``, changed by what
    ``map_request``, ``map_response`` and concretely typed layers do to them. Its type
    parameters are the built service's request and response types, then the wrapped
    service's; `Unchanged` marks a type the layers leave as it is.

    Example:
        >>> svc = ServiceBuilder().map_request(str.strip).service(service_fn(echo))
    """

    __slots__ = ("_layers",)

    def __init__(self) -> None:
        self._layers: tuple[Layer[Any, Any, Any, Any], ...] = ()

    def _with(self, layer: Layer[Any, Any, Any, Any]) -> Self:
        # typed as this builder: the methods that change the types say so in their overloads
        builder = type(self)()
        builder._layers = (*self._layers, layer)
        return builder

    # A layer that keeps types keeps the builder's; a concretely typed Layer[A, B, C, D] turns a
    # Service[A, B] into a Service[C, D]: it fixes each Unchanged side, or must accept what the
    # layers above it send (C) and return what they expect (D).
    @overload
    def layer(self, layer: KeepsTypesLayer) -> Self: ...
    @overload
    def layer(
        self: ServiceBuilder[_U, _U, _U, _U], layer: Layer[_A, _B, _C, _D]
    ) -> ServiceBuilder[_C, _D, _A, _B]: ...
    @overload
    def layer(
        self: ServiceBuilder[_U, RespT, _U, InnerRespT], layer: Layer[_A, _B, _C, InnerRespT]
    ) -> ServiceBuilder[_C, RespT, _A, _B]: ...
    @overload
    def layer(
        self: ServiceBuilder[ReqT, _U, InnerReqT, _U], layer: Layer[_A, _B, InnerReqT, _D]
    ) -> ServiceBuilder[ReqT, _D, _A, _B]: ...
    @overload
    def layer(
        self: ServiceBuilder[ReqT, RespT, InnerReqT, InnerRespT],
        layer: Layer[_A, _B, InnerReqT, InnerRespT],
    ) -> ServiceBuilder[ReqT, RespT, _A, _B]: ...
    def layer(self, layer: Layer[Any, Any, Any, Any]) -> Any:
        """Returns a new builder with ``layer`` added inside the layers added so far.

        Raises:
            TypeError: ``layer`` has no ``layer(inner)`` method.
        """
        _check_layer(layer)
        return self._with(layer)

    # None adds nothing, so only a layer that keeps the types it is given may be optional
    @overload
    def option_layer(self, layer: KeepsTypesLayer | None) -> Self: ...
    @overload
    def option_layer(
        self: ServiceBuilder[_U, _U, _U, _U], layer: Layer[_A, _B, _A, _B] | None
    ) -> ServiceBuilder[_A, _B, _A, _B]: ...
    @overload
    def option_layer(
        self: ServiceBuilder[_U, RespT, _U, InnerRespT],
        layer: Layer[_A, InnerRespT, _A, InnerRespT] | None,
    ) -> ServiceBuilder[_A, RespT, _A, InnerRespT]: ...
    @overload
    def option_layer(
        self: ServiceBuilder[ReqT, _U, InnerReqT, _U],
        layer: Layer[InnerReqT, _B, InnerReqT, _B] | None,
    ) -> ServiceBuilder[ReqT, _B, InnerReqT, _B]: ...
    @overload
    def option_layer(
        self, layer: Layer[InnerReqT, InnerRespT, InnerReqT, InnerRespT] | None
    ) -> Self: ...
    def option_layer(self, layer: Layer[Any, Any, Any, Any] | None) -> Any:
        """Like `layer`, but None adds nothing: for layers that configuration may turn off."""
        return self if layer is None else self.layer(layer)

    @overload
    def map_request(
        self: ServiceBuilder[_U, RespT, _U, InnerRespT], fn: Callable[[_A], _B]
    ) -> ServiceBuilder[_A, RespT, _B, InnerRespT]: ...
    @overload
    def map_request(
        self: ServiceBuilder[ReqT, RespT, InnerReqT, InnerRespT], fn: Callable[[InnerReqT], _B]
    ) -> ServiceBuilder[ReqT, RespT, _B, InnerRespT]: ...
    def map_request(self, fn: Callable[[Any], Any]) -> Any:
        """Adds a `MapRequest`: ``fn`` (a plain function) transforms each request."""
        return self._with(MapRequestLayer(fn))

    @overload
    def map_response(
        self: ServiceBuilder[ReqT, _U, InnerReqT, _U], fn: Callable[[_A], _B]
    ) -> ServiceBuilder[ReqT, _B, InnerReqT, _A]: ...
    @overload
    def map_response(
        self: ServiceBuilder[ReqT, RespT, InnerReqT, InnerRespT], fn: Callable[[_A], InnerRespT]
    ) -> ServiceBuilder[ReqT, RespT, InnerReqT, _A]: ...
    def map_response(self, fn: Callable[[Any], Any]) -> Any:
        """Adds a `MapResponse`: ``fn`` (a plain function) transforms each response."""
        return self._with(MapResponseLayer(fn))

    def map_err(self, fn: Callable[[Exception], Exception]) -> Self:
        """Adds a `MapErr`: ``fn`` (a plain function) replaces each exception."""
        return self._with(MapErrLayer(fn))

    def concurrency_limit(
        self,
        max_in_flight: int | None = None,
        *,
        limiter: ConcurrencyBackend | None = None,
        priority: Callable[[Any], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> Self:
        """Adds a `ConcurrencyLimit`: at most ``max_in_flight`` requests in flight.

        Give exactly one of ``max_in_flight`` (a count for this stack's service alone) or
        ``limiter`` (a `ConcurrencyLimiter` shared with other services). ``priority`` and
        ``aging`` order the waiters by priority (see `ConcurrencyLimit`).

        Raises:
            ValueError: Neither or both are given, ``max_in_flight`` is below 1, or ``aging``
                is not a finite number above 0 (raised here, not when the stack is built).
            TypeError: ``max_in_flight`` is not an int, ``limiter`` is not a limiter, or
                ``priority`` is not a plain function.
        """
        _limiter_from("ServiceBuilder.concurrency_limit()", max_in_flight, limiter)
        return self._with(
            ConcurrencyLimitLayer(max_in_flight, limiter=limiter, priority=priority, aging=aging)
        )

    def keyed_concurrency_limit(
        self,
        key: Callable[[Any], Hashable],
        limits: Mapping[Any, int],
        default: int | None = None,
    ) -> Self:
        """Adds a `KeyedConcurrencyLimit`: a separate limit per ``key(request)``.

        Args:
            key: A plain function from a request to a hashable key (its agent, tool, tenant).
            limits: The limit of each known key.
            default: The limit of every other key, each on its own; None for no limit.

        Raises:
            ValueError: A limit is below 1 (raised here).
            TypeError: ``key`` is not a plain function, or a limit is not an int.
        """
        return self._with(KeyedConcurrencyLimitLayer(key, limits, default))

    def rate_limit(
        self,
        rate: float | None = None,
        per: float = 1.0,
        *,
        burst: float | None = None,
        cost: Callable[[Any], float] | None = None,
        actual_cost: Callable[[Any, Any], float] | None = None,
        limiter: RateBackend | None = None,
        priority: Callable[[Any], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> Self:
        """Adds a `RateLimit`: a token bucket of ``rate`` tokens per ``per`` seconds.

        Give exactly one of ``rate`` (a bucket for this stack's service alone) or ``limiter``
        (a `TokenBucket` shared with other services: one budget for them all). ``priority``
        and ``aging`` order the waiters by priority (see `RateLimit`).

        Raises:
            ValueError: Neither or both of ``rate`` and ``limiter`` are given; ``per`` or
                ``burst`` is given with ``limiter``; ``rate``, ``per`` or ``burst`` is not a
                finite number above 0 (raised here, not when the stack is built).
            TypeError: ``cost``, ``actual_cost`` or ``priority`` is not a plain function, or
                ``limiter`` is not a bucket.
        """
        _bucket_from("ServiceBuilder.rate_limit()", rate, per, burst, cost, actual_cost, limiter)
        return self._with(
            RateLimitLayer(
                rate,
                per,
                burst=burst,
                cost=cost,
                actual_cost=actual_cost,
                limiter=limiter,
                priority=priority,
                aging=aging,
            )
        )

    # a provider quota estimates ChatRequests: it fixes an Unchanged request type to that, and
    # must otherwise be where the layers above it send ChatRequests
    @overload
    def provider_quota(
        self: ServiceBuilder[_U, RespT, _U, InnerRespT],
        requests: float | RateBackend | None = None,
        tokens: float | RateBackend | None = None,
        *,
        per: float = 60.0,
        estimate: Callable[[ChatRequest], float] | None = None,
        learn: bool = True,
        max_pause: float = 60.0,
        reserve: float = 0.1,
    ) -> ServiceBuilder[ChatRequest, RespT, ChatRequest, InnerRespT]: ...
    @overload
    def provider_quota(
        self: ServiceBuilder[ReqT, RespT, ChatRequest, InnerRespT],
        requests: float | RateBackend | None = None,
        tokens: float | RateBackend | None = None,
        *,
        per: float = 60.0,
        estimate: Callable[[ChatRequest], float] | None = None,
        learn: bool = True,
        max_pause: float = 60.0,
        reserve: float = 0.1,
    ) -> ServiceBuilder[ReqT, RespT, ChatRequest, InnerRespT]: ...
    def provider_quota(
        self,
        requests: float | RateBackend | None = None,
        tokens: float | RateBackend | None = None,
        *,
        per: float = 60.0,
        estimate: Callable[[ChatRequest], float] | None = None,
        learn: bool = True,
        max_pause: float = 60.0,
        reserve: float = 0.1,
    ) -> Any:
        """Adds a `ProviderQuota`: a provider's request and token quota, learned from its headers.

        Equal to ``.layer(ProviderQuotaLayer(...))`` (see it for the arguments); ``estimate``
        None means `towerpy.llm.estimate_tokens`. Every service this builder builds shares the
        one quota: build the stacks of one API key's agents from it.

        Raises:
            ValueError: A budget or ``per`` that is not a finite number above 0, a request
                budget below 1 request per period, ``max_pause`` negative (raised here).
            TypeError: A budget neither a number, a `RateBackend` nor None; ``estimate`` not a
                plain function.
        """
        from .llm.estimate import estimate_tokens
        from .llm.quota import ProviderQuotaLayer

        layer = ProviderQuotaLayer(
            requests,
            tokens,
            per=per,
            estimate=estimate_tokens if estimate is None else estimate,
            learn=learn,
            max_pause=max_pause,
            reserve=reserve,
        )
        return self._with(layer)

    def timeout(self, seconds: float) -> Self:
        """Adds a `Timeout`: a call taking longer than ``seconds`` raises `Elapsed`.

        Raises:
            ValueError: ``seconds`` is negative or NaN (raised here).
        """
        return self._with(TimeoutLayer(seconds))

    def load_shed(self) -> Self:
        """Adds a `LoadShed`: `Overloaded` at once when the layers below are not ready."""
        return self._with(LoadShedLayer())

    def buffer(
        self,
        bound: int,
        *,
        priority: Callable[[Any], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> Self:
        """Adds a `Buffer`: a queue of at most ``bound`` requests in front of a worker task.

        ``priority`` and ``aging`` order the queue by priority (see `Buffer`).
        """
        return self._with(BufferLayer(bound, priority=priority, aging=aging))

    def retry(self, policy: Policy[Any]) -> Self:
        """Adds a `Retry`: failed calls are tried again as ``policy`` (a `RetryPolicy`) says."""
        return self._with(RetryLayer(policy))

    def circuit_breaker(
        self,
        failure_threshold: int = 5,
        recovery_time: float = 30.0,
        *,
        failure_on: ExceptionMatcher | None = None,
        half_open_calls: int = 1,
        breaker: CircuitBreaker | None = None,
    ) -> Self:
        """Adds a `Circuit`: after failures in a row, calls are refused with `CircuitOpen`.

        Give the settings (a `CircuitBreaker` for this stack's service alone) or ``breaker``
        (one shared with other services: one circuit for them all).

        Raises:
            TypeError: An argument has the wrong type (raised here).
            ValueError: A setting is out of range, or settings are given with ``breaker``.
        """
        return self._with(
            CircuitBreakerLayer(
                failure_threshold,
                recovery_time,
                failure_on=failure_on,
                half_open_calls=half_open_calls,
                breaker=breaker,
            )
        )

    # the fallback service must take what the layers above send and answer what they expect;
    # before anything fixed the types, it fixes them
    @overload
    def fallback(
        self: ServiceBuilder[_U, _U, _U, _U],
        service: Service[_A, _B],
        *,
        on: ExceptionMatcher | None = None,
    ) -> ServiceBuilder[_A, _B, _A, _B]: ...
    @overload
    def fallback(
        self: ServiceBuilder[_U, RespT, _U, InnerRespT],
        service: Service[_A, InnerRespT],
        *,
        on: ExceptionMatcher | None = None,
    ) -> ServiceBuilder[_A, RespT, _A, InnerRespT]: ...
    @overload
    def fallback(
        self: ServiceBuilder[ReqT, _U, InnerReqT, _U],
        service: Service[InnerReqT, _B],
        *,
        on: ExceptionMatcher | None = None,
    ) -> ServiceBuilder[ReqT, _B, InnerReqT, _B]: ...
    @overload
    def fallback(
        self, service: Service[InnerReqT, InnerRespT], *, on: ExceptionMatcher | None = None
    ) -> Self: ...
    def fallback(self, service: Service[Any, Any], *, on: ExceptionMatcher | None = None) -> Any:
        """Adds a `Fallback`: requests failed with an error ``on`` accepts go to ``service``.

        Raises:
            TypeError: ``service`` is not a `Service`, or ``on`` is not a tuple of exception
                classes or a plain function (raised here).
        """
        return self._with(FallbackLayer(service, on=on))

    def hedge(
        self,
        delay: float | None = None,
        *,
        quantile: float = 0.95,
        budget_ratio: float = 0.1,
        min_samples: int = 20,
        idempotent: Callable[[Any], bool] = _always,
        window: int = 1000,
    ) -> Self:
        """Adds a `Hedge`: a request slower than the hedge delay is sent again; the first wins.

        The delay is ``delay``, or the observed latency ``quantile``; at most ``budget_ratio``
        of the requests are hedged, and only those ``idempotent`` accepts.

        Raises:
            TypeError: An argument has the wrong type (raised here).
            ValueError: An argument is out of range.
        """
        return self._with(
            HedgeLayer(
                delay,
                quantile=quantile,
                budget_ratio=budget_ratio,
                min_samples=min_samples,
                idempotent=idempotent,
                window=window,
            )
        )

    @overload
    def service(
        self: ServiceBuilder[_U, _U, _U, _U], inner: Service[_A, _B]
    ) -> Service[_A, _B]: ...
    @overload
    def service(
        self: ServiceBuilder[_U, RespT, _U, InnerRespT], inner: Service[_A, InnerRespT]
    ) -> Service[_A, RespT]: ...
    @overload
    def service(
        self: ServiceBuilder[ReqT, _U, InnerReqT, _U], inner: Service[InnerReqT, _B]
    ) -> Service[ReqT, _B]: ...
    @overload
    def service(
        self: ServiceBuilder[ReqT, RespT, InnerReqT, InnerRespT],
        inner: Service[InnerReqT, InnerRespT],
    ) -> Service[ReqT, RespT]: ...
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
