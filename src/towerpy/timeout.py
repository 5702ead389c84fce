"""Timeout: bounds how long a call to the inner service may take."""

from __future__ import annotations

import functools
import math
from typing import TypeVar, final

from typing_extensions import override

from . import _backend
from ._service import Middleware, Service
from ._validate import check_seconds
from .errors import Elapsed

__all__ = ["Timeout", "TimeoutLayer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_NOTHING_TO_WAIT_FOR = Service.ready  # the base class's ready(): returns at once


@final
class Timeout(Middleware[ReqT, RespT]):
    """Fails a call to the inner service that takes longer than a time limit.

    The limit bounds the inner ``call()``. When it passes, the inner call is cancelled (it sees
    anyio's cancellation, its ``finally`` blocks and shielded sections run, nothing keeps
    running) and ``call()`` raises `Elapsed`, whose message names the limit.

    - ``ready()`` is the inner service's, not bounded by the limit (wrap it in
      ``anyio.fail_after`` to bound it). ``await svc(request)`` is ``ready()``, untimed,
      then ``call()``: a wait for the inner service's capacity happens before the limit starts.
    - ``call()`` without a reservation (no ``ready()`` first) includes the inner service's own
      wait for capacity, so that wait counts toward the limit.
    - Cancellation from outside (an enclosing cancel scope, a task group failing) is never
      turned into `Elapsed`: it propagates as cancellation, also when it is due at the same
      instant as the limit. With nested timeouts, the one whose limit passed raises; if both
      pass at once, the outer one does.
    - ``seconds=0``: a call that completes without suspending returns; any call that suspends
      raises `Elapsed` (as ``anyio.fail_after(0)`` does), on both backends.

    Args:
        inner: The service to bound.
        seconds: The limit, in seconds (``math.inf``: no limit).

    Raises:
        ValueError: ``seconds`` is negative or NaN (at construction).
        Elapsed: From ``call()``, when the limit passes.
    """

    __slots__ = ("_deadlines", "_message", "_seconds")
    _towerpy_sheds = True

    def __init__(self, inner: Service[ReqT, RespT], seconds: float) -> None:
        self._seconds = check_seconds("seconds", seconds)
        super().__init__(inner)
        self._message = f"request timed out after {self._seconds}s"
        elapsed = functools.partial(Elapsed, self._message, seconds=self._seconds)
        self._deadlines = _backend.Deadlines(self._seconds, elapsed)

    @property
    def seconds(self) -> float:
        """The limit, in seconds."""
        return self._seconds

    @override
    async def __call__(self, request: ReqT) -> RespT:
        inner = self.inner
        if type(inner).ready is not _NOTHING_TO_WAIT_FOR:  # skip an await of a no-op
            await inner.ready()  # not timed: the limit bounds the call alone
        if self._seconds == math.inf:
            unbounded: RespT = await inner.call(request)
            return unbounded
        # call(), inlined: one coroutine fewer on every request's path
        result: RespT = await _backend.current().call_with_deadline(
            self._deadlines, inner.call, request
        )
        return result

    @override
    async def call(self, request: ReqT) -> RespT:
        if self._seconds == math.inf:
            unbounded: RespT = await self.inner.call(request)
            return unbounded
        # the backend runs it: one timer for every call of this Timeout on asyncio (see
        # towerpy._backend._deadlines), a cancel scope on trio
        result: RespT = await _backend.current().call_with_deadline(
            self._deadlines, self.inner.call, request
        )
        return result

    def __repr__(self) -> str:
        return f"Timeout({self.inner!r}, seconds={self._seconds})"


@final
class TimeoutLayer:
    """Wraps services in `Timeout`.

    Args:
        seconds: The limit of each call, in seconds (``math.inf``: no limit).

    Raises:
        ValueError: ``seconds`` is negative or NaN.
        TypeError: ``seconds`` is not a number.

    Example:
        >>> tool = ServiceBuilder().layer(TimeoutLayer(30)).service(search)
    """

    __slots__ = ("_seconds",)

    def __init__(self, seconds: float) -> None:
        self._seconds = check_seconds("seconds", seconds)

    @property
    def seconds(self) -> float:
        """The limit, in seconds."""
        return self._seconds

    def layer(self, inner: Service[ReqT, RespT]) -> Timeout[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `Timeout`."""
        return Timeout(inner, self._seconds)

    def __repr__(self) -> str:
        return f"TimeoutLayer({self._seconds})"
