"""Fallback: when the inner service fails with a chosen error, the same request goes elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Self, TypeVar, final

from typing_extensions import override

from .._failures import is_unavailable
from .._service import Middleware, Service, callable_name
from .._validate import check_exception_matcher

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from .._validate import ExceptionMatcher

__all__ = ["Fallback", "FallbackLayer", "FallbackStatistics"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@dataclass(frozen=True, slots=True)
class FallbackStatistics:
    """What a fallback has done.

    Attributes:
        fell_back: Requests sent to the fallback service after the primary failed.
        fallback_failures: Of those, the ones the fallback failed too.
    """

    fell_back: int
    fallback_failures: int


def _check_service(fallback: object) -> None:
    if isinstance(fallback, Service):
        return
    if callable(fallback):
        raise TypeError(
            f"fallback needs a Service, got the function {callable_name(fallback)!r}; "
            f"wrap it with service_fn()"
        )
    raise TypeError(f"fallback needs a Service, got {type(fallback).__name__}")


def _short(error: BaseException) -> str:
    text = str(error)
    if len(text) > 200:
        text = text[:199] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _chain(error: BaseException, primary: BaseException) -> None:
    """Makes ``primary`` part of ``error``'s context chain, at its end, unless it already is."""
    seen: set[int] = set()
    link = error
    while link.__context__ is not None:
        if link.__context__ is primary or id(link) in seen:
            return
        seen.add(id(link))
        link = link.__context__
    if link is not primary:
        link.__context__ = primary  # what Python does when both happen in one task


@final
class Fallback(Middleware[ReqT, RespT], direct_call=True):
    """Sends a request to a fallback service when the primary (inner) service fails with it.

    When the primary raises an error that ``on`` accepts, the same request goes to
    ``fallback``, and its answer (or its error) is the answer. The primary's error is kept:
    it is in the ``__context__`` chain of the fallback's error (at its end), and a note on
    that error names it. Errors ``on`` does not accept, and cancellation, propagate unchanged.

    A chain is layers stacked, the fallback nearest the service tried first:
    ``ServiceBuilder().fallback(c).fallback(b).service(a)`` tries ``a``, then ``b``, then
    ``c``; or nest them, ``.fallback(ServiceBuilder().fallback(c).service(b)).service(a)``.

    - ``ready()`` and ``try_ready()`` are the primary's: a fallback is for failures, not for
      waiting (put a `LoadShed` below it to fall back instead of waiting: its `Overloaded` is
      one of the default errors).
    - ``call()`` calls the primary with the task's reservation; on an accepted error, it calls
      the fallback (waiting for its readiness).
    - ``async with`` enters the primary, then the fallback; it leaves them in reverse order.

    Args:
        inner: The primary service.
        fallback: The service that gets the requests the primary failed.
        on: Which errors of the primary fall back: a tuple of exception classes, or a function
            of the exception. By default, the errors that say the primary cannot serve now and
            another service may: a `CircuitOpen` or any `Overloaded`, a `RateLimited`, a
            `ProviderUnavailable` or any retryable `ProviderError`, a `TimeoutError` (`Elapsed`),
            a `ConnectionError`.

    Raises:
        TypeError: ``fallback`` is not a `Service`, or ``on`` is not a matcher.
    """

    __slots__ = ("_fallback", "_fallback_failures", "_fell_back", "_matches")

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        fallback: Service[ReqT, RespT],
        *,
        on: ExceptionMatcher | None = None,
    ) -> None:
        _check_service(fallback)
        self._matches: Callable[[BaseException], bool] = (
            is_unavailable if on is None else check_exception_matcher("on", on)
        )
        super().__init__(inner)
        self._fallback = fallback
        self._fell_back = 0
        self._fallback_failures = 0

    @property
    def fallback(self) -> Service[ReqT, RespT]:
        """The service that gets the requests the primary failed."""
        return self._fallback

    @override
    async def call(self, request: ReqT) -> RespT:
        try:
            response: RespT = await self.inner(request)
        except Exception as exc:
            if not self._matches(exc):
                raise
            primary = exc
        else:
            return response
        self._fell_back += 1
        try:
            answer: RespT = await self._fallback(request)
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._fallback_failures += 1
                _chain(exc, primary)
                exc.add_note(f"towerpy: Fallback sent the request here after {_short(primary)}")
            raise
        return answer

    @override
    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        try:
            await self._fallback.__aenter__()
        except BaseException as exc:
            await self.inner.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._fallback.__aexit__(exc_type, exc, tb)
        finally:
            await self.inner.__aexit__(exc_type, exc, tb)

    def statistics(self) -> FallbackStatistics:
        """Returns how many requests fell back, and how many of those failed again."""
        return FallbackStatistics(self._fell_back, self._fallback_failures)

    def __repr__(self) -> str:
        return f"Fallback({self.inner!r}, fallback={self._fallback!r})"


@final
class FallbackLayer(Generic[ReqT, RespT]):
    """Wraps services in a `Fallback` to ``fallback``.

    Args:
        fallback: The service that gets the requests the wrapped service failed. A fallback
            that takes another request type (another provider's model name) is a
            ``map_request`` away: ``ServiceBuilder().map_request(f).service(other)``.
        on: Which errors fall back (see `Fallback`).

    Raises:
        TypeError: ``fallback`` is not a `Service`, or ``on`` is not a matcher.

    Example:
        >>> model = ServiceBuilder().layer(FallbackLayer(backup)).service(primary)
    """

    __slots__ = ("_fallback", "_on")

    def __init__(
        self, fallback: Service[ReqT, RespT], *, on: ExceptionMatcher | None = None
    ) -> None:
        _check_service(fallback)
        if on is not None:
            check_exception_matcher("on", on)
        self._fallback = fallback
        self._on = on

    def layer(self, inner: Service[ReqT, RespT]) -> Fallback[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `Fallback`."""
        return Fallback(inner, self._fallback, on=self._on)

    def __repr__(self) -> str:
        return f"FallbackLayer({self._fallback!r})"
