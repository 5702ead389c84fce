"""The Service base class, the Layer protocol, and the small adapters around them."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar, final, overload

from typing_extensions import TypeVar as DefaultTypeVar
from typing_extensions import override

from . import _reserve
from ._callables import callable_name as callable_name  # re-exported: layers import it here
from ._callables import is_async_callable as is_async_callable
from ._validate import check_async_function, check_plain_function

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

__all__ = [
    "Identity",
    "Layer",
    "LayerFn",
    "Middleware",
    "Service",
    "ServiceFn",
    "layer_fn",
    "service_fn",
]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
ReqT_contra = TypeVar("ReqT_contra", contravariant=True)
RespT_co = TypeVar("RespT_co", covariant=True)
InReqT_co = TypeVar("InReqT_co", covariant=True)
InRespT_contra = TypeVar("InRespT_contra", contravariant=True)
OutReqT_contra = TypeVar("OutReqT_contra", contravariant=True)
OutRespT_co = TypeVar("OutRespT_co", covariant=True)
# the inner service's types of a Middleware: by default the same as the middleware's own
InnerReqT = DefaultTypeVar("InnerReqT", default=ReqT_contra)
InnerRespT = DefaultTypeVar("InnerRespT", default=RespT_co)
# a layer_fn's types, Any when a bare `LayerFn` is written in an annotation
FnInReqT = DefaultTypeVar("FnInReqT", default=Any)
FnInRespT = DefaultTypeVar("FnInRespT", default=Any)
FnOutReqT = DefaultTypeVar("FnOutReqT", default=Any)
FnOutRespT = DefaultTypeVar("FnOutRespT", default=Any)


class Service(abc.ABC, Generic[ReqT_contra, RespT_co]):
    """An asynchronous function from a request to a response, with a readiness check.

    Subclass it and implement `call`. Override `ready` (and `try_ready`) only when the service
    has capacity of its own to wait for.

    The rules every service follows:

    - ``call()`` alone is always correct: a service that holds no reservation for the calling
      task acquires whatever capacity it needs itself, waiting if it must. One service object is
      safe to share between any number of concurrent tasks.
    - ``await ready()`` returns when the calling task's next ``call()`` will not wait on any
      capacity, and reserves that capacity for it. A second ``ready()`` before ``call()`` keeps
      one reservation. A reservation that is never used is given back when its task ends.
    - ``await service(request)`` is ``await service.ready()`` followed by
      ``await service.call(request)``; if the call fails, whatever the task still holds
      from that ``ready()`` is given back (`drop_reservation`).

    **Direct calls.** ``service(request)`` runs ``call()`` alone, saving the readiness round
    trip, when ``ready()`` followed by ``call()`` would do nothing more. That is so, and is the
    default, for a service with no readiness of its own (it inherits `Service.ready`
    unchanged). A class with readiness declares it in its class statement,
    ``class MyLimit(Middleware[Req, Resp], direct_call=True)``, when its ``call()`` acquires its
    own capacity if the task holds no reservation and reaches the inner service through
    ``self.inner(request)`` (which readies it) without bounding, counting or reordering that
    readiness (a timeout cannot: its ``ready()`` is not timed; a `Middleware` is not direct
    unless it says so). The choice belongs to the class that makes it: a subclass that
    overrides ``call`` or ``ready`` is decided anew.
    """

    __slots__ = ("__weakref__",)

    def __init_subclass__(cls, *, direct_call: bool | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            if direct_call is not None:
                raise TypeError(
                    f"{cls.__name__} defines __call__ and passes direct_call=: choose one"
                )
            return
        if direct_call is None:
            if "call" not in cls.__dict__ and "ready" not in cls.__dict__:
                return  # the parent's __call__ still fits
            # an inherited direct __call__ would skip this class's own call() or ready(); without
            # readiness of its own, ready() does nothing and skipping it changes nothing
            direct_call = cls.ready is Service.ready
        cls.__call__ = cls.call if direct_call else Service.__call__  # type: ignore[method-assign]

    async def ready(self) -> None:
        """Waits until the next `call` from this task will not wait, and reserves that capacity.

        The default returns at once: a service with no capacity of its own is always ready.
        """

    async def try_ready(self) -> bool:
        """Reserves like `ready`, but only if that needs no waiting.

        Returns:
            True when capacity is now reserved for this task's next `call`; False, holding
            nothing, when `ready` would have had to wait.

        The default runs `ready` in an already-cancelled scope: the service counts as ready
        when `ready` completes without waiting. Services that reserve capacity override it
        with an exact, cheaper check.
        """
        if type(self).ready is Service.ready:
            return True
        import anyio

        with anyio.CancelScope() as scope:
            scope.cancel()
            await self.ready()
            return True
        return False

    @abc.abstractmethod
    async def call(self, request: ReqT_contra) -> RespT_co:
        """Processes one request and returns its response.

        Args:
            request: The request.

        Returns:
            The response.
        """

    async def __call__(self, request: ReqT_contra) -> RespT_co:
        await self.ready()
        try:
            return await self.call(request)
        except BaseException:
            self.drop_reservation()  # a call that failed before using it must not keep it
            raise

    def drop_reservation(self) -> None:
        """Gives back, unused, what the calling task's ``ready()`` reserved here and below.

        A layer calls it on its inner service when it refuses a request without calling
        through (a circuit breaker that is open, a request that fails validation), so that the
        capacity the caller's ``ready()`` reserved further down is free for other tasks at
        once, not only when the task ends. Calling it when nothing is held does nothing.

        The default drops the reservation this service holds under its own key (see
        `towerpy.lowlevel`); a service that wraps others forwards to them as well.
        """
        _reserve.drop(self)

    async def __aenter__(self) -> Self:
        """Starts any background work the service needs; returns the service itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops the background work started by `__aenter__`."""


class Middleware(
    Service[ReqT_contra, RespT_co], Generic[ReqT_contra, RespT_co, InnerReqT, InnerRespT]
):
    """A service that wraps one inner service: the base class of every towerpy middleware.

    Its ``inner`` attribute is what makes it a ``towerpy._chain.Wraps``: the chain of services
    towerpy walks down (load shedding, the observability hooks) follows it.

    It forwards `ready`, `try_ready`, `__aenter__` and `__aexit__` to ``inner``. A subclass
    implements `call`, usually ending in ``await self.inner(request)``.

    ``Middleware[Req, Resp]`` takes requests of type ``Req``, returns ``Resp``, and wraps a
    ``Service[Req, Resp]``; a middleware that changes the types names the inner service's as
    well: ``Middleware[Req, Resp, InnerReq, InnerResp]``.

    Args:
        inner: The wrapped service.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Service[InnerReqT, InnerRespT]) -> None:
        self.inner = inner

    @override
    async def ready(self) -> None:
        await self.inner.ready()

    @override
    def drop_reservation(self) -> None:
        _reserve.drop(self)
        self.inner.drop_reservation()

    @override
    async def try_ready(self) -> bool:
        return await self.inner.try_ready()

    @override
    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class Layer(Protocol[InReqT_co, InRespT_contra, OutReqT_contra, OutRespT_co]):
    """Wraps a service in another: middleware, ready to be stacked by `ServiceBuilder`.

    ``Layer[InnerReq, InnerResp, Req, Resp]`` turns a ``Service[InnerReq, InnerResp]`` into a
    ``Service[Req, Resp]``. A layer whose ``layer`` method is generic (``Service[T, U]`` in,
    ``Service[T, U]`` out, as every towerpy layer's is) fits any service.
    """

    def layer(
        self, inner: Service[InReqT_co, InRespT_contra], /
    ) -> Service[OutReqT_contra, OutRespT_co]:
        """Returns ``inner`` wrapped in this layer's middleware."""
        ...


@final
class ServiceFn(Service[ReqT_contra, RespT_co], direct_call=True):
    """A service whose `call` is an async function. Build it with `service_fn`."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[ReqT_contra], Awaitable[RespT_co]]) -> None:
        check_async_function(
            "service_fn(fn)",
            fn,
            hint="declare it with async def, or run blocking work in a thread with "
            "anyio.to_thread.run_sync",
        )
        self._fn = fn

    @override
    async def call(self, request: ReqT_contra) -> RespT_co:
        return await self._fn(request)

    def __repr__(self) -> str:
        return f"service_fn({callable_name(self._fn)})"


def service_fn(fn: Callable[[ReqT], Awaitable[RespT]]) -> Service[ReqT, RespT]:
    """Makes a service from an async function of one argument.

    Args:
        fn: ``async def fn(request) -> response``.

    Returns:
        A service that is always ready and whose `call` awaits ``fn(request)``.

    Raises:
        TypeError: ``fn`` is not an async function.
    """
    return ServiceFn(fn)


class KeepsTypesLayer(Protocol):
    """A layer whose ``layer`` is generic: any ``Service[Req, Resp]`` in, one of the same out.

    Every towerpy layer is one; `ServiceBuilder` keeps its types across them.
    """

    def layer(self, inner: Service[ReqT, RespT], /) -> Service[ReqT, RespT]:
        """Returns ``inner`` wrapped in this layer's middleware."""
        ...


class _KeepsTypesFn(Protocol):
    # a generic function from a service to one of the same types (a generic Middleware class)
    def __call__(self, inner: Service[ReqT, RespT], /) -> Service[ReqT, RespT]: ...


@final
class LayerFn(Generic[FnInReqT, FnInRespT, FnOutReqT, FnOutRespT]):
    """A layer made from a function of the inner service. Build it with `layer_fn`."""

    __slots__ = ("_fn",)

    def __init__(
        self, fn: Callable[[Service[FnInReqT, FnInRespT]], Service[FnOutReqT, FnOutRespT]]
    ) -> None:
        check_plain_function(
            "layer_fn(fn)",
            fn,
            hint="it returns the wrapped Service, once, when the stack is built",
        )
        self._fn = fn

    def layer(self, inner: Service[FnInReqT, FnInRespT]) -> Service[FnOutReqT, FnOutRespT]:
        """Returns ``fn(inner)``."""
        return self._fn(inner)

    def __repr__(self) -> str:
        return f"layer_fn({callable_name(self._fn)})"


# a generic function matches both; the first, which keeps it generic, is the one wanted
@overload
def layer_fn(fn: _KeepsTypesFn) -> KeepsTypesLayer: ...  # type: ignore[overload-overlap]
@overload
def layer_fn(
    fn: Callable[[Service[FnInReqT, FnInRespT]], Service[FnOutReqT, FnOutRespT]],
) -> LayerFn[FnInReqT, FnInRespT, FnOutReqT, FnOutRespT]: ...
def layer_fn(fn: Callable[[Service[Any, Any]], Service[Any, Any]]) -> Any:
    """Makes a layer from a function that wraps a service.

    A generic function (a generic `Middleware` subclass, say) makes a layer that fits any
    service and keeps its types; a function of one ``Service[Req, Resp]`` makes a layer of those
    types, which `ServiceBuilder` checks. (pyright cannot type a lambda's parameter here: for a
    middleware of fixed types with extra arguments, pass ``functools.partial(Tag, name=...)``.)

    Args:
        fn: A plain function from the inner service to the wrapping service.

    Returns:
        A layer whose ``layer(inner)`` returns ``fn(inner)``.

    Raises:
        TypeError: ``fn`` is not callable, or is an async function.
    """
    return LayerFn(fn)


@final
class Identity:
    """The layer that changes nothing: ``Identity().layer(s) is s``."""

    __slots__ = ()

    def layer(self, inner: Service[ReqT, RespT]) -> Service[ReqT, RespT]:
        """Returns ``inner`` itself."""
        return inner

    def __repr__(self) -> str:
        return "Identity()"
