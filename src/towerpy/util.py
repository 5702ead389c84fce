"""Small combinators: change the request, the response or the error on the way through.

And the priority a caller sets for what it calls: `priority_scope` and `context_priority`.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final, overload

from typing_extensions import override

from ._callables import callable_name
from ._service import Identity, Middleware, Service
from ._validate import check_plain_function

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._service import Layer

__all__ = [
    "MapErr",
    "MapErrLayer",
    "MapRequest",
    "MapRequestLayer",
    "MapResponse",
    "MapResponseLayer",
    "context_priority",
    "option_layer",
    "priority_scope",
]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
NewReqT = TypeVar("NewReqT")
NewRespT = TypeVar("NewRespT")
LayerT = TypeVar("LayerT", bound="Layer[Any, Any, Any, Any]")


def _plain_function(fn: object, who: str) -> None:
    check_plain_function(f"{who}(fn)", fn, hint="do async work in a Service of its own")


@final
class MapRequest(Middleware[NewReqT, RespT, Any, RespT], direct_call=True):
    """Applies a function to each request before the inner service sees it.

    ``ready()`` is the inner service's; ``call()`` raises whatever the function or the inner
    service raises.
    """

    __slots__ = ("_fn",)
    _towerpy_sheds = True

    def __init__(self, inner: Service[ReqT, RespT], fn: Callable[[NewReqT], ReqT]) -> None:
        _plain_function(fn, "map_request")
        super().__init__(inner)
        self._fn = fn

    @override
    async def call(self, request: NewReqT) -> RespT:
        try:
            mapped = self._fn(request)
        except BaseException:
            self.inner.drop_reservation()  # refused before the call: free what ready() took
            raise
        result: RespT = await self.inner(mapped)
        return result


@final
class MapResponse(Middleware[ReqT, NewRespT, ReqT, Any], direct_call=True):
    """Applies a function to each response of the inner service.

    ``ready()`` is the inner service's; errors of the inner service pass through untouched.
    """

    __slots__ = ("_fn",)
    _towerpy_sheds = True

    def __init__(self, inner: Service[ReqT, RespT], fn: Callable[[RespT], NewRespT]) -> None:
        _plain_function(fn, "map_response")
        super().__init__(inner)
        self._fn = fn

    @override
    async def call(self, request: ReqT) -> NewRespT:
        return self._fn(await self.inner(request))


@final
class MapErr(Middleware[ReqT, RespT], direct_call=True):
    """Replaces each exception of the inner service with the one a function returns.

    The new exception is raised ``from`` the original; when the function returns the original,
    it propagates unchanged. Only `Exception` subclasses are mapped: cancellation and other
    `BaseException` pass through untouched.
    """

    __slots__ = ("_fn",)

    def __init__(self, inner: Service[ReqT, RespT], fn: Callable[[Exception], Exception]) -> None:
        _plain_function(fn, "map_err")
        super().__init__(inner)
        self._fn = fn

    @override
    async def call(self, request: ReqT) -> RespT:
        try:
            result: RespT = await self.inner(request)
        except Exception as exc:
            mapped = self._fn(exc)
            if mapped is exc:
                raise
            if not isinstance(mapped, BaseException):
                raise TypeError(
                    f"map_err function {callable_name(self._fn)!r} must return an exception, "
                    f"returned {type(mapped).__name__}"
                ) from exc
            raise mapped from exc
        return result


@final
class MapRequestLayer(Generic[NewReqT, ReqT]):
    """Layer of `MapRequest`."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[NewReqT], ReqT]) -> None:
        _plain_function(fn, "map_request")
        self._fn = fn

    def layer(self, inner: Service[ReqT, RespT]) -> MapRequest[NewReqT, RespT]:
        """Wraps ``inner`` in a `MapRequest`."""
        return MapRequest(inner, self._fn)


@final
class MapResponseLayer(Generic[RespT, NewRespT]):
    """Layer of `MapResponse`."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[RespT], NewRespT]) -> None:
        _plain_function(fn, "map_response")
        self._fn = fn

    def layer(self, inner: Service[ReqT, RespT]) -> MapResponse[ReqT, NewRespT]:
        """Wraps ``inner`` in a `MapResponse`."""
        return MapResponse(inner, self._fn)


@final
class MapErrLayer:
    """Layer of `MapErr`."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[Exception], Exception]) -> None:
        _plain_function(fn, "map_err")
        self._fn = fn

    def layer(self, inner: Service[ReqT, RespT]) -> MapErr[ReqT, RespT]:
        """Wraps ``inner`` in a `MapErr`."""
        return MapErr(inner, self._fn)


@overload
def option_layer(layer: None) -> Identity: ...
@overload
def option_layer(layer: LayerT) -> LayerT: ...
@overload
def option_layer(layer: LayerT | None) -> LayerT | Identity: ...
def option_layer(layer: Layer[Any, Any, Any, Any] | None) -> Layer[Any, Any, Any, Any]:
    """Returns ``layer``, or the identity layer when it is None (a layer that is configured off)."""
    return Identity() if layer is None else layer


_priority: ContextVar[int] = ContextVar("towerpy_priority", default=0)


@contextmanager
def priority_scope(priority: int) -> Iterator[None]:
    """Sets the priority of what the current task calls within the block (see `context_priority`).

    Tasks started inside the block inherit it (an agent's tool calls, a workflow's steps);
    blocks nest, the innermost winning.

    Args:
        priority: The priority: higher is admitted first by a layer given
            ``priority=context_priority``.

    Raises:
        TypeError: ``priority`` is not an int.

    Example:
        >>> limit = ConcurrencyLimitLayer(4, priority=context_priority)
        >>> with priority_scope(10):  # an interactive user: ahead of the batch jobs
        ...     answer = await agent("summarise my inbox")
    """
    if type(priority) is not int:
        raise TypeError(
            f"priority_scope(priority) takes an int, got {type(priority).__name__} "
            f"{priority!r}; higher is admitted first"
        )
    token = _priority.set(priority)
    try:
        yield
    finally:
        _priority.reset(token)


def context_priority(request: object) -> int:
    """Returns the priority the caller set with `priority_scope` (0 outside any), for any request.

    Pass it as ``priority=`` to `ConcurrencyLimitLayer`, `RateLimitLayer`, `BufferLayer` or
    `ParallelToolRouter`, so that the caller's priority, not the request, decides.
    """
    return _priority.get()
