"""The chain of services a service wraps: the one way towerpy walks down a stack of layers.

A service that wraps another says so with an ``inner`` attribute: `Middleware` declares it
(every towerpy layer is one), and a service of one's own that wraps another may too. That is
the `Wraps` protocol; `iter_chain` follows it down. The observability hooks (naming an agent's
services, describing a model step) and `LoadShed` (finding the layers it reaches) use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Wraps", "iter_chain"]

_DEEPEST = 64  # a chain longer than this is not walked further (a stack is never that deep)


@runtime_checkable
class Wraps(Protocol):
    """A service that wraps another one, its ``inner`` service."""

    @property
    def inner(self) -> Any: ...


def iter_chain(service: object) -> Iterator[object]:
    """Yields ``service``, then the service it wraps, and so on down to one that wraps none.

    Stops at a service already seen (a chain that loops) and after 64 services.
    """
    seen: set[int] = set()
    node: object = service
    while node is not None and id(node) not in seen and len(seen) < _DEEPEST:
        seen.add(id(node))
        yield node
        node = node.inner if isinstance(node, Wraps) else None
