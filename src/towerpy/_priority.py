"""Priorities: waiters ordered by priority, then by arrival, with aging against starvation.

A waiter of priority ``p`` arriving at time ``t`` gets the rank ``t - p * aging``: the lowest
rank is served first, and equal ranks in arrival order. Its effective priority, ``p`` plus one
step for every ``aging`` seconds it has waited, orders the waiters the same way at every
instant, so the rank, computed once, never needs updating: a heap on (rank, arrival) is exact.
The bound that follows, which the layers document: a waiter of priority ``p`` that arrived at
``t`` is served before any waiter of priority ``q`` that arrives after ``t + (q - p) * aging``.
With ``aging=None`` the rank is ``-p``: strict priorities, which can starve a low priority.

`PriorityLine` is that heap, with the face of the ordered dictionary a first-come first-served
line is (`towerpy._waiter.Permits`, a buffer's queue): ``line[waiter] = rank`` joins the line,
``pop`` leaves it in O(1) (the heap entry is only marked), ``popitem(last=False)`` takes the
first. Code written for the ordered dictionary runs unchanged on either.
"""

from __future__ import annotations

import heapq
import math
from numbers import Real
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._backend import current_time
from ._callables import callable_name
from ._validate import check_plain_function, check_seconds

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "DEFAULT_AGING",
    "PriorityLine",
    "check_aging",
    "check_priority",
    "prioritize",
    "priority_before_call",
    "priority_of",
    "ranked_line",
]

ItemT = TypeVar("ItemT")
BackendT = TypeVar("BackendT")

DEFAULT_AGING = 10.0  # seconds of waiting worth one priority step: each step a 10 s head start

_DEAD = object()  # the item of a heap entry whose waiter left the line


def check_priority(priority: object) -> None:
    """Checks a ``priority=`` argument: None, or a plain function of the request.

    Raises:
        TypeError: ``priority`` is not a plain (synchronous) function.
    """
    if priority is not None:
        check_plain_function(
            "priority",
            priority,
            hint="it is called with each request that must wait, and returns an int",
        )


def check_aging(aging: object) -> float | None:
    """Checks an ``aging=`` argument: None (strict priorities) or seconds per priority step.

    Raises:
        TypeError: ``aging`` is not a number.
        ValueError: ``aging`` is not finite and above 0.
    """
    if aging is None:
        return None
    return check_seconds("aging", aging, positive=True, finite=True)


def priority_of(fn: Callable[[Any], object], request: object) -> float:
    """Returns ``fn(request)``, checked: the priority of a request.

    Raises:
        TypeError: ``fn`` returned something else than a number.
        ValueError: ``fn`` returned NaN or an infinity.
    """
    value = fn(request)
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"the priority function {callable_name(fn)!r} returned {type(value).__name__} "
            f"{value!r}; a priority must be an int (higher goes first)"
        )
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(
            f"the priority function {callable_name(fn)!r} returned {value!r}; a priority must "
            f"be a finite number (higher goes first)"
        )
    return number


def priority_before_call(fn: Callable[[Any], object], request: object, inner: Any) -> float:
    """`priority_of` for a request that must wait, in a layer's ``call()``.

    When it raises, what the task's ``ready()`` reserved in ``inner`` is dropped first: the
    request is refused before its call.
    """
    try:
        return priority_of(fn, request)
    except BaseException:
        inner.drop_reservation()
        raise


def prioritize(
    who: str,
    backend: object,
    in_memory: type[BackendT],
    layer: str,
    priority: object,
    aging: object,
) -> BackendT | None:
    """Checks ``priority`` and ``aging`` of a limiting layer over ``backend``.

    Returns:
        ``backend``, now serving its waiters by priority, or None without ``priority``.

    Raises:
        TypeError: ``priority`` is given and ``backend`` is not an ``in_memory`` one (a Redis
            limiter orders its waiters itself), or an argument has the wrong type.
        ValueError: ``aging`` is bad, or not the one ``backend`` already serves by.
    """
    check_priority(priority)
    checked = check_aging(aging)
    if priority is None:
        return None
    name = in_memory.__name__
    if type(backend) is not in_memory:
        raise TypeError(
            f"{who}: priority= needs an in-memory {name}, got {type(backend).__name__}: it "
            f"orders its waiters itself; drop priority=, or limit with a {name}"
        )
    served: Any = backend  # an in-memory limiter or bucket: both have _line and _by_priority
    line = served._line
    if line is not None and line.aging != checked:
        raise ValueError(
            f"this {name} already orders its waiters with aging={line.aging}; give every "
            f"{layer} sharing it the same aging"
        )
    served._by_priority(checked)
    return served  # type: ignore[no-any-return]


def ranked_line(waiting: Iterable[ItemT], aging: float | None) -> PriorityLine[ItemT]:
    """Returns a priority line holding ``waiting``: first, in their order, ahead of newcomers."""
    line: PriorityLine[ItemT] = PriorityLine(aging)
    for item in waiting:
        line[item] = -math.inf
    return line


@final
class PriorityLine(Generic[ItemT]):
    """Waiters by rank, then arrival: the ordered dictionary of a first-come first-served line.

    ``line[item] = rank`` puts ``item`` in line (`rank` makes its rank from a priority); the
    first is the item of the lowest rank, and of equal ranks the one put in line first.

    Args:
        aging: Seconds of waiting worth one priority step, or None for strict priorities.
    """

    __slots__ = ("_entries", "_heap", "_seq", "aging")

    def __init__(self, aging: float | None) -> None:
        self.aging = aging
        self._heap: list[list[Any]] = []  # [rank, arrival, item]; item _DEAD once it left
        self._entries: dict[ItemT, list[Any]] = {}
        self._seq = 0

    def rank(self, priority: float) -> float:
        """Returns the rank of a waiter of ``priority`` arriving now."""
        aging = self.aging
        if aging is None:
            return -priority
        return current_time() - priority * aging

    def __setitem__(self, item: ItemT, rank: float) -> None:
        old = self._entries.get(item)
        if old is not None:
            old[2] = _DEAD
        self._seq += 1
        entry = [rank, self._seq, item]
        self._entries[item] = entry
        heapq.heappush(self._heap, entry)

    def __delitem__(self, item: ItemT) -> None:
        self._entries.pop(item)[2] = _DEAD
        self._compact()

    def pop(self, item: ItemT, default: Any = None) -> Any:
        """Takes ``item`` out of line; returns its rank, or ``default`` if it was not there."""
        entry = self._entries.pop(item, None)
        if entry is None:
            return default
        entry[2] = _DEAD
        self._compact()
        return entry[0]

    def _compact(self) -> None:
        # entries of waiters that left stay in the heap until they reach the top: rebuild it
        # when they are most of it, so that a line many leave stays as small as its waiters
        heap = self._heap
        while heap and heap[0][2] is _DEAD:
            heapq.heappop(heap)
        if len(heap) > 2 * len(self._entries) + 8:
            self._heap = [entry for entry in heap if entry[2] is not _DEAD]
            heapq.heapify(self._heap)

    def first(self) -> ItemT:
        """Returns the first in line, leaving it there.

        Raises:
            IndexError: The line is empty.
        """
        heap = self._heap
        if not self._entries:
            raise IndexError("the line is empty")
        while heap[0][2] is _DEAD:
            heapq.heappop(heap)
        return heap[0][2]  # type: ignore[no-any-return]

    def popitem(self, last: bool = False) -> tuple[ItemT, float]:
        """Takes the first in line out; returns it and its rank (``last=True`` is refused).

        Raises:
            KeyError: The line is empty.
        """
        if last:
            raise ValueError("a priority line hands out its first waiter only")
        heap = self._heap
        if not self._entries:
            raise KeyError("popitem(): the line is empty")
        while True:
            rank, _, item = heapq.heappop(heap)
            if item is not _DEAD:
                del self._entries[item]
                return item, rank

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __contains__(self, item: object) -> bool:
        return item in self._entries

    def __iter__(self) -> Iterator[ItemT]:
        """Yields the waiters in the order they will be served."""
        for entry in sorted(self._entries.values()):
            yield entry[2]

    def clear(self) -> None:
        """Empties the line."""
        self._heap.clear()
        self._entries.clear()

    def __repr__(self) -> str:
        return f"PriorityLine(aging={self.aging}, waiting={len(self._entries)})"
