"""BufferLayer: wraps each service in a `Buffer` of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, final

from .._priority import DEFAULT_AGING, check_aging, check_priority
from .._validate import check_positive_int
from .service import Buffer

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._service import Service

__all__ = ["BufferLayer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@final
class BufferLayer:
    """Layer of `Buffer`: each service it wraps gets its own queue of at most ``bound`` requests.

    Args:
        bound: How many requests may wait in the queue at once (reservations included).
        priority: Returns a request's priority (higher is granted first; see `Buffer`), or
            None for first-in first-out.
        aging: Seconds of waiting worth one priority step, or None for strict priorities.

    Raises:
        TypeError: ``bound`` is not an int, or ``priority`` not a plain function.
        ValueError: ``bound`` is below 1, or ``aging`` not a finite number above 0.
    """

    __slots__ = ("_aging", "_bound", "_priority")

    def __init__(
        self,
        bound: int,
        *,
        priority: Callable[[Any], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> None:
        self._bound = check_positive_int("bound", bound)
        check_priority(priority)
        self._aging = check_aging(aging)
        self._priority = priority

    def layer(self, inner: Service[ReqT, RespT]) -> Buffer[ReqT, RespT]:
        """Wraps ``inner`` in a `Buffer`."""
        return Buffer(inner, self._bound, priority=self._priority, aging=self._aging)

    @property
    def bound(self) -> int:
        """How many requests may wait in the queue."""
        return self._bound

    def __repr__(self) -> str:
        if self._priority is None:
            return f"BufferLayer({self._bound})"
        return f"BufferLayer({self._bound}, priority={self._priority!r})"
