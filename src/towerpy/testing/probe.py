"""InFlightProbe: a wrapper that records how many calls run at once, and when."""

from __future__ import annotations

from typing import TypeVar, final

from typing_extensions import override

from .._backend import current_time
from .._service import Middleware, Service

__all__ = ["InFlightProbe"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@final
class InFlightProbe(Middleware[ReqT, RespT]):
    """Records the calls that pass through it, for asserting limits and rates.

    ``ready()`` is the inner service's. Every call counts, whether it returns, raises or is
    cancelled.

    Attributes:
        in_flight: Calls running now.
        peak: The most calls that ever ran at once.
        calls: ``(start, end)`` times (`anyio.current_time`) of the calls that have ended, in
            the order they ended.
        started: Start times of every call, in the order they started.
    """

    __slots__ = ("calls", "in_flight", "peak", "started")
    _towerpy_sheds = True

    def __init__(self, inner: Service[ReqT, RespT]) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.peak = 0
        self.calls: list[tuple[float, float]] = []
        self.started: list[float] = []

    @override
    async def call(self, request: ReqT) -> RespT:
        start = current_time()
        self.started.append(start)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            result: RespT = await self.inner.call(request)  # ready() is not counted
        finally:
            self.in_flight -= 1
            self.calls.append((start, current_time()))
        return result

    def reset(self) -> None:
        """Forgets what was recorded (calls still running keep counting in `in_flight`)."""
        self.peak = self.in_flight
        self.calls.clear()
        self.started.clear()

    def __repr__(self) -> str:
        return f"InFlightProbe({self.inner!r}, in_flight={self.in_flight}, peak={self.peak})"
