"""MapReduce: map every item through a service, fold the results in input order as they come."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, final, overload

from typing_extensions import override

from .._service import Service
from .._validate import check_plain_function, check_positive_int
from ..tools._failures import replace_note
from ..tools._join import Join, JoinPolicy
from ._steps import EntersSteps, Steps, check_policy, check_service, note_failures, short_repr

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["MapReduce"]

ItemT = TypeVar("ItemT")
OutT = TypeVar("OutT")
AccT = TypeVar("AccT")
# the overloads' own type variables: pyright solves a self type only with these
ItemV = TypeVar("ItemV")
OutV = TypeVar("OutV")
AccV = TypeVar("AccV")


def _isolate(index: int, error: Exception) -> Exception:
    return error  # the reducer gets the exception in the item's place


@final
class MapReduce(EntersSteps, Service["Iterable[ItemT]", AccT], Generic[ItemT, OutT, AccT]):
    """Maps each item of its input through a service, and reduces the results in input order.

    ``call(items)`` runs ``map(item)`` for every item, at most ``limit`` at once (as
    `ParallelToolRouter` runs a batch), and folds the results with ``reduce(acc, result)``,
    starting from ``initial``, in the order of the items — each one as soon as it and every
    result before it are there, not once all of them are: while the map calls still run, the
    reduction has already gone as far as the results allow, and a result is dropped once
    reduced. It returns the final accumulator (``initial`` for no items).

    ``reduce`` is a plain function, called in the event loop between map calls: keep it cheap
    (slow work belongs in a step service). ``initial`` is used as it is by every call, so
    ``reduce`` should return a new accumulator rather than change it (``acc + [result]``, not
    ``acc.append(result)``). When ``reduce`` raises, every map call still running is cancelled
    and its exception propagates, with a note saying at which item.

    A map call's failure does what the policy says:

    - `JoinPolicy.FAIL_FAST` (the default: once an item is lost, the result is too, and the
      other map calls would be wasted) cancels every map call still running and raises it.
    - `JoinPolicy.JOIN_ALL` maps every item, reduces up to the first failed one, then raises
      the failure of the earliest failed item, with a note naming the failed items.
    - `JoinPolicy.ISOLATE` never raises for a map call's failure: ``reduce`` receives the
      exception in the item's place, in order, and decides.

    ``ready()`` returns at once. Cancelling ``call()`` cancels every map call. The input may be
    any iterable except a string or bytes (it is read into a list first).

    Args:
        map: The service each item goes through.
        reduce: ``reduce(acc, result) -> acc``.
        initial: The accumulator to start from.
        limit: The most map calls running at once.
        policy: What a map call's failure does.

    Raises:
        TypeError: ``map`` is not a `Service`, ``reduce`` not a plain function, ``policy`` not
            a `JoinPolicy`, or ``limit`` not an int.
        ValueError: ``limit`` below 1.
    """

    __slots__ = ("_steps", "initial", "limit", "map", "policy", "reduce")

    @overload
    def __init__(
        self: MapReduce[ItemV, OutV, AccV],
        map: Service[ItemV, OutV],
        reduce: Callable[[AccV, OutV], AccV],
        *,
        initial: AccV,
        limit: int = 5,
        policy: Literal[JoinPolicy.FAIL_FAST, JoinPolicy.JOIN_ALL] = JoinPolicy.FAIL_FAST,
    ) -> None: ...
    @overload
    def __init__(
        self: MapReduce[ItemV, OutV | Exception, AccV],
        map: Service[ItemV, OutV],
        reduce: Callable[[AccV, OutV | Exception], AccV],
        *,
        initial: AccV,
        limit: int = 5,
        policy: Literal[JoinPolicy.ISOLATE],
    ) -> None: ...
    @overload
    def __init__(  # a policy known only at run time: reduce may be handed a failure
        self: MapReduce[ItemV, OutV | Exception, AccV],
        map: Service[ItemV, OutV],
        reduce: Callable[[AccV, OutV | Exception], AccV],
        *,
        initial: AccV,
        limit: int = 5,
        policy: JoinPolicy,
    ) -> None: ...
    def __init__(
        self,
        map: Service[Any, Any],
        reduce: Callable[[Any, Any], Any],
        *,
        initial: Any,
        limit: int = 5,
        policy: JoinPolicy = JoinPolicy.FAIL_FAST,
    ) -> None:
        check_service("MapReduce's map", map)
        check_plain_function("MapReduce's reduce", reduce)
        check_positive_int("limit", limit)
        self.map: Service[ItemT, Any] = map
        self.reduce: Callable[[AccT, Any], AccT] = reduce
        self.initial: AccT = initial
        self.limit = limit
        self.policy = check_policy(policy)
        self._steps = Steps([map])

    @override
    async def call(self, request: Iterable[ItemT]) -> AccT:
        if isinstance(request, str | bytes):
            raise TypeError(
                f"MapReduce maps over the items of an iterable, got a {type(request).__name__}; "
                f"pass a list ([text]) to map one"
            )
        items = list(request)
        count = len(items)
        reduce = self.reduce
        acc = self.initial
        done = bytearray(count)
        cursor = 0

        def finish(index: int) -> None:
            nonlocal acc, cursor
            done[index] = 1
            outputs = join.outputs
            while cursor < count and done[cursor]:
                try:
                    acc = reduce(acc, outputs[cursor])
                except Exception as exc:
                    replace_note(exc, "towerpy MapReduce:", f"raised by reduce() at item {cursor}")
                    raise
                outputs[cursor] = None  # reduced: the result is not needed any more
                cursor += 1

        join = Join(items, self.map, self.limit, self.policy, _isolate, _label, finish)
        await join.run(0, count)
        error = join.error
        if error is None:
            return acc
        if self.policy is JoinPolicy.JOIN_ALL and join.error_index >= 0:
            names = [f"{_label(i)}: {type(e).__name__}" for i, e in sorted(join.errors.items())]
            note_failures(error, "MapReduce", names, count, "items", "")
        raise error

    def __repr__(self) -> str:
        return (
            f"MapReduce({short_repr(self.map)}, {short_repr(self.reduce)}, limit={self.limit}, "
            f"policy={self.policy.name})"
        )


def _label(index: int) -> str:
    return f"item {index}"
