"""BufferLayer: wraps each service in a `Buffer` of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, final

from .._validate import check_positive_int
from .service import Buffer

if TYPE_CHECKING:
    from .._service import Service

__all__ = ["BufferLayer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@final
class BufferLayer:
    """Layer of `Buffer`: each service it wraps gets its own queue of at most ``bound`` requests.

    Args:
        bound: How many requests may wait in the queue at once (reservations included).

    Raises:
        TypeError: ``bound`` is not an int.
        ValueError: ``bound`` is below 1.
    """

    __slots__ = ("_bound",)

    def __init__(self, bound: int) -> None:
        self._bound = check_positive_int("bound", bound)

    def layer(self, inner: Service[ReqT, RespT]) -> Buffer[ReqT, RespT]:
        """Wraps ``inner`` in a `Buffer`."""
        return Buffer(inner, self._bound)

    @property
    def bound(self) -> int:
        """How many requests may wait in the queue."""
        return self._bound

    def __repr__(self) -> str:
        return f"BufferLayer({self._bound})"
