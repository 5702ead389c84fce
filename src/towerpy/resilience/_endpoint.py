"""A `Balance`'s record of one endpoint: its calls in flight and its peak-EWMA latency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from .._backend import current_task

if TYPE_CHECKING:
    from .._service import Service

__all__ = ["BalanceStatistics", "Endpoint", "EndpointStatistics", "give_back"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@dataclass(frozen=True, slots=True)
class EndpointStatistics:
    """One endpoint of a `Balance`.

    Attributes:
        service: The endpoint.
        in_flight: Its calls running now.
        requests: Requests sent to it so far.
        latency: Its peak-EWMA latency estimate now, in seconds; None before its first answer.
    """

    service: Service[Any, Any]
    in_flight: int
    requests: int
    latency: float | None


@dataclass(frozen=True, slots=True)
class BalanceStatistics:
    """What a `Balance` is doing, endpoint by endpoint (in the order they were added)."""

    endpoints: tuple[EndpointStatistics, ...]


@final
class Endpoint(Generic[ReqT, RespT]):
    """An endpoint, its calls in flight, and its peak-EWMA latency (as tower's ``PeakEwma``)."""

    __slots__ = ("in_flight", "removed", "requests", "rtt", "service", "updated")

    def __init__(self, service: Service[ReqT, RespT]) -> None:
        self.service = service
        self.in_flight = 0
        self.requests = 0
        self.rtt: float | None = None
        self.updated = 0.0
        self.removed = False

    def latency(self, now: float, decay: float) -> float | None:
        # the estimate decays toward 0 while nothing is observed: an endpoint left alone after a
        # slow answer is tried again in time
        if self.rtt is None:
            return None
        return self.rtt * math.exp(-(now - self.updated) / decay)

    def observe(self, now: float, latency: float, decay: float) -> None:
        current = self.latency(now, decay)
        if current is None or latency > current:
            self.rtt = latency  # a peak is taken at once
        else:
            recency = 1.0 - math.exp(-(now - self.updated) / decay)
            self.rtt = current + (latency - current) * recency
        self.updated = now


def give_back(endpoint: Endpoint[Any, Any]) -> None:
    # the pick is dropped unused: what the task reserved on the endpoint goes back with it. Out
    # of a task (its end, a handoff never attached), those reservations are dropped with it.
    try:
        current_task()
    except RuntimeError:
        return
    endpoint.service.drop_reservation()
