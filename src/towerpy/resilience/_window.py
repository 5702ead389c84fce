"""The latest latencies of a service, kept in order and sorted, for a quantile in one index."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import final

__all__ = ["LatencyWindow"]


@final
class LatencyWindow:
    """The latest ``size`` latencies, kept sorted too, so that a quantile costs one index."""

    __slots__ = ("_order", "_size", "_sorted")

    def __init__(self, size: int) -> None:
        self._size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def add(self, latency: float) -> None:
        """Records a latency, forgetting the oldest when the window is full."""
        if len(self._order) == self._size:
            oldest = self._order.popleft()
            del self._sorted[bisect_left(self._sorted, oldest)]
        self._order.append(latency)
        insort(self._sorted, latency)

    def quantile(self, q: float) -> float:
        """Returns the ``q`` quantile of the window (which must not be empty)."""
        # nearest rank: the smallest sample with at least q of the samples at or below it
        values = self._sorted
        return values[max(0, math.ceil(q * len(values)) - 1)]

    def __len__(self) -> int:
        return len(self._order)
