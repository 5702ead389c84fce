"""Finds the limits inside services and agents, and reads what each is doing now."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, final

from pydantic import BaseModel

from .._service import Service
from ..limit.concurrency import ConcurrencyLimit
from ..limit.keyed import KeyedConcurrencyLimit
from ..limit.protocols import ConcurrencyBackend, RateBackend
from ..limit.rate import RateLimit
from ..load_shed import LoadShed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["Limit", "LimitState", "find_limits"]

Kind = Literal["concurrency", "rate", "shed"]


@dataclass(frozen=True, slots=True)
class LimitState:
    """What one limit is doing at one instant.

    Attributes:
        name: The limit's label.
        kind: ``"concurrency"`` (a concurrency limit, or one key of a keyed one), ``"rate"``
            (a token bucket) or ``"shed"`` (a load shedder).
        in_flight: Permits out (concurrency), else None.
        capacity: The most permits (concurrency) or tokens (rate: the burst), else None.
        waiting: Requests waiting for capacity now.
        tokens: Tokens available now (rate), else None; negative while in debt.
        rate: Tokens per second (rate), else None.
        shed: Requests refused so far (shed), else None.
    """

    name: str
    kind: Kind
    in_flight: int | None = None
    capacity: float | None = None
    waiting: int = 0
    tokens: float | None = None
    rate: float | None = None
    shed: int | None = None


@final
class Limit:
    """One limit found in the services given: read `states` for what it does now."""

    __slots__ = ("_read", "name")

    def __init__(self, name: str, read: Callable[[str], list[LimitState]]) -> None:
        self.name = name
        self._read = read

    def states(self) -> list[LimitState]:
        """What the limit is doing now (a keyed limit: one state per key)."""
        return self._read(self.name)

    def __repr__(self) -> str:
        return f"Limit({self.name!r})"


def _concurrency(limiter: ConcurrencyBackend) -> Callable[[str], list[LimitState]]:
    def read(name: str) -> list[LimitState]:
        stats = limiter.statistics()
        return [
            LimitState(name, "concurrency", stats.in_flight, stats.max_in_flight, stats.waiting)
        ]

    return read


def _rate(bucket: RateBackend) -> Callable[[str], list[LimitState]]:
    def read(name: str) -> list[LimitState]:
        stats = bucket.statistics()
        per_second = stats.rate / stats.per
        return [
            LimitState(
                name,
                "rate",
                capacity=stats.burst,
                waiting=stats.waiting,
                tokens=stats.tokens,
                rate=per_second,
            )
        ]

    return read


def _keyed(service: KeyedConcurrencyLimit[Any, Any]) -> Callable[[str], list[LimitState]]:
    def read(name: str) -> list[LimitState]:
        return [
            LimitState(
                f"{name} [{key}]",
                "concurrency",
                stats.in_flight,
                stats.max_in_flight,
                stats.waiting,
            )
            for key, stats in service.statistics().keys.items()
        ]

    return read


def _shed(service: LoadShed[Any, Any]) -> Callable[[str], list[LimitState]]:
    def read(name: str) -> list[LimitState]:
        return [LimitState(name, "shed", shed=service.statistics().shed)]

    return read


def _own_limit(node: object) -> tuple[str, object, Callable[[str], list[LimitState]]] | None:
    """The limit ``node`` is or holds itself: its default label, its identity, its reader."""
    if isinstance(node, ConcurrencyLimit | RateLimit):
        node = node.limiter  # a backend of one's own too, which the walk would not enter
    if isinstance(node, KeyedConcurrencyLimit):
        return "keyed limit", node, _keyed(node)
    if isinstance(node, LoadShed):
        return "load shed", node, _shed(node)
    if isinstance(node, ConcurrencyBackend):
        return "concurrency limit", node, _concurrency(node)
    if isinstance(node, RateBackend):
        return "rate limit", node, _rate(node)
    return None


_FIRST = ("inner", "step", "tools", "router", "_tools")


def _children(node: object) -> Iterator[object]:
    """What ``node`` holds that may hold limits: its attributes, and what containers hold."""
    if isinstance(node, Mapping):
        yield from node.values()
        return
    if isinstance(node, list | tuple | set | frozenset):
        yield from node
        return
    names: list[str] = []
    for cls in type(node).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    names += list(getattr(node, "__dict__", {}))
    # the path a request takes first (an agent's model, then its tools), the rest after
    names.sort(key=lambda name: _FIRST.index(name) if name in _FIRST else len(_FIRST))
    for name in names:
        if name not in ("__weakref__", "__dict__"):
            value = getattr(node, name, None)
            if value is not None:
                yield value


def _worth_visiting(value: object) -> bool:
    if isinstance(value, type | BaseModel | str | bytes | int | float):
        return False  # classes, messages and specs, plain values: no limit inside
    if isinstance(value, Mapping | list | tuple | set | frozenset | Service):
        return True
    return type(value).__module__.startswith("towerpy")


def find_limits(*sources: object) -> list[Limit]:
    """Finds every limit in ``sources``, each once, in the order met.

    A source is a service (its layers are followed inward), an `Agent` (its step service and
    its tools), a limiter (`ConcurrencyLimiter`, `TokenBucket`, their Redis twins), or a
    mapping from a label to any of those. A limiter shared by several services is one limit.
    Labels: a mapping's label for its only limit, ``"label: kind"`` when it holds several,
    else the kind (``"rate limit"``, ``"concurrency limit"``, ``"keyed limit"``, ``"load
    shed"``); a keyed limit shows one row per key, ``"label [key]"``.

    Raises:
        ValueError: Nothing in ``sources`` holds a limit (a typo would show an empty view).
    """
    found: list[tuple[str | None, str, Callable[[str], list[LimitState]]]] = []
    owners: set[int] = set()
    for label, source in _labelled(sources):
        start = len(found)
        seen: set[int] = set()
        stack: list[object] = [source]
        order: list[object] = []
        while stack:  # depth first, in attribute order
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            order.append(node)
            children = [child for child in _children(node) if _worth_visiting(child)]
            stack.extend(reversed(children))
        for node in order:
            own = _own_limit(node)
            if own is not None and id(own[1]) not in owners:
                owners.add(id(own[1]))
                found.append((label, own[0], own[2]))
        if label is not None and len(found) - start > 1:
            found[start:] = [(f"{label}: {kind}", kind, read) for _, kind, read in found[start:]]
    if not found:
        raise ValueError(
            "no limit found in the services given: pass the services, agents or limiters "
            "(ConcurrencyLimiter, TokenBucket) whose limits to show"
        )
    limits: list[Limit] = []
    used: dict[str, int] = {}
    for label, kind, read in found:
        name = label if label is not None else kind
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name} #{used[name]}"
        limits.append(Limit(name, read))
    return limits


def _labelled(sources: tuple[object, ...]) -> Iterator[tuple[str | None, object]]:
    for source in sources:
        if isinstance(source, Mapping):
            for label, item in source.items():
                if not isinstance(label, str):
                    raise TypeError(f"a label of the limits to show must be a str, got {label!r}")
                yield label, item
        else:
            yield None, source
