"""The dependency graph of a batch of tool invocations: `ToolGraph` but for running it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._join import Dependencies
from .models import ToolInvocation

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["OUTPUT_REFERENCE", "Graph"]

OUTPUT_REFERENCE = "$output"
"""The key of an argument value that stands for another invocation's output: ``{"$output": id}``."""

_IDS_SHOWN = 10  # ids an error message lists


class Graph:
    """A batch of invocations with their dependencies: `ToolGraph`, without `ToolGraph.run`.

    `ParallelToolRouter` builds one (this module, unlike `towerpy.tools.graph`, is below it).
    """

    __slots__ = ("_dependents", "_index", "_needs", "_order", "_refs", "invocations")

    def __init__(
        self,
        invocations: Iterable[ToolInvocation],
        *,
        sequential: Callable[[str], bool] | None = None,
    ) -> None:
        batch = tuple(invocations)
        for item in batch:
            if not isinstance(item, ToolInvocation):
                raise TypeError(f"a ToolGraph is made of ToolInvocation, got {item!r}")
        self.invocations: tuple[ToolInvocation, ...] = batch
        index: dict[str, int] = {}
        for position, invocation in enumerate(batch):
            if index.setdefault(invocation.id, position) != position:
                raise ValueError(
                    f"two invocations have the id {invocation.id!r}: in a batch where "
                    f"invocations depend on others, every id must be unique"
                )
        self._index = index
        needs = [_needs(position, invocation, index) for position, invocation in enumerate(batch)]
        barriers = set()
        if sequential is not None:
            barriers = {i for i, invocation in enumerate(batch) if sequential(invocation.name)}
            _add_barriers(needs, sorted(barriers))
        self._needs: list[tuple[int, ...]] = [tuple(sorted(n)) for n in needs]
        dependents: list[list[int]] = [[] for _ in batch]
        for position, required in enumerate(self._needs):
            for dependency in required:
                dependents[dependency].append(position)
        self._dependents = dependents
        self._order = self._topological_order(barriers)
        self._refs = [_check_references(invocation, index) for invocation in batch]

    def _topological_order(self, barriers: set[int]) -> list[int]:
        counts = [len(required) for required in self._needs]
        order = [position for position, count in enumerate(counts) if count == 0]
        for position in order:  # grows while it is read: Kahn's algorithm
            for dependent in self._dependents[position]:
                counts[dependent] -= 1
                if counts[dependent] == 0:
                    order.append(dependent)
        if len(order) < len(self._needs):
            raise ValueError(self._cycle_message(counts, barriers))
        return order

    def _cycle_message(self, counts: list[int], barriers: set[int]) -> str:
        # every invocation left over still waits on another left over: walk until one repeats
        start = next(position for position, count in enumerate(counts) if count > 0)
        path: list[int] = []
        seen: dict[int, int] = {}
        position = start
        while position not in seen:
            seen[position] = len(path)
            path.append(position)
            position = next(d for d in self._needs[position] if counts[d] > 0)
        cycle = [*path[seen[position] :], position]
        shown = " -> ".join(repr(self.invocations[p].id) for p in cycle)
        hint = ""
        if barriers.intersection(cycle):
            hint = (
                " (a sequential tool waits for every invocation before it, and every one after "
                "it waits for it)"
            )
        return (
            f"the invocations depend on each other in a cycle, so none of them could start: "
            f"{shown}{hint}; each arrow points to an id in depends_on: remove one of them"
        )

    @property
    def ids(self) -> list[str]:
        """The invocations' ids, in batch order."""
        return [invocation.id for invocation in self.invocations]

    def dependencies(self, id: str) -> list[str]:
        """The ids the invocation ``id`` waits for (barriers included), in batch order.

        Raises:
            KeyError: No invocation has that id.
        """
        position = self._position(id)
        return [self.invocations[d].id for d in self._needs[position]]

    def dependents(self, id: str) -> list[str]:
        """The ids that wait for the invocation ``id``, in batch order.

        Raises:
            KeyError: No invocation has that id.
        """
        position = self._position(id)
        return [self.invocations[d].id for d in self._dependents[position]]

    def _position(self, id: str) -> int:
        try:
            return self._index[id]
        except KeyError:
            raise KeyError(f"no invocation with the id {id!r} in this graph") from None

    def levels(self) -> list[list[ToolInvocation]]:
        """The invocations by topological level: level n waits only for levels below n.

        Level 0 holds the invocations without dependencies; each other invocation sits one
        level above the highest of its dependencies. Running the levels one after the other,
        each in parallel, is "waves", the schedule a hand-written ``asyncio.gather`` per level
        gives: slower than `ParallelToolRouter`, because each level waits for its slowest call.
        """
        level = [0] * len(self.invocations)
        for position in self._order:
            required = self._needs[position]
            if required:
                level[position] = 1 + max(level[d] for d in required)
        levels: list[list[ToolInvocation]] = [[] for _ in range(max(level, default=-1) + 1)]
        for position, invocation in enumerate(self.invocations):
            levels[level[position]].append(invocation)
        return levels

    def critical_path(self, duration: Callable[[ToolInvocation], float]) -> float:
        """The length of the longest chain of dependencies, each invocation taking ``duration``.

        No schedule can finish sooner; `ParallelToolRouter` finishes exactly then when its
        ``limit`` lets everything ready run at once.
        """
        finish = [0.0] * len(self.invocations)
        for position in self._order:
            start = max((finish[d] for d in self._needs[position]), default=0.0)
            finish[position] = start + duration(self.invocations[position])
        return max(finish, default=0.0)

    def schedule(self) -> Dependencies:
        """A fresh dependency table for one run (the counts are used up by it)."""
        return Dependencies(self._dependents, [len(required) for required in self._needs])

    def prepare(self, outputs: Sequence[Any]) -> Callable[[int, ToolInvocation], ToolInvocation]:
        """Returns the function that puts the outputs an invocation uses into its arguments."""
        refs = self._refs
        index = self._index

        def prepare(position: int, invocation: ToolInvocation) -> ToolInvocation:
            if not refs[position]:
                return invocation
            arguments = _resolve(invocation.arguments, outputs, index)
            return invocation.model_copy(update={"arguments": arguments})

        return prepare

    def __len__(self) -> int:
        return len(self.invocations)

    def __repr__(self) -> str:
        edges = sum(len(required) for required in self._needs)
        return f"ToolGraph({len(self.invocations)} invocations, {edges} dependencies)"


def _needs(position: int, invocation: ToolInvocation, index: dict[str, int]) -> set[int]:
    required: set[int] = set()
    for id in invocation.depends_on:
        found = index.get(id)
        if found is None:
            known = ", ".join(map(repr, list(index)[:_IDS_SHOWN]))
            more = ", …" if len(index) > _IDS_SHOWN else ""
            raise ValueError(
                f"invocation {invocation.id!r} (tool {invocation.name!r}) depends on {id!r}, "
                f"which is not in the batch; depends_on names ids of the same batch: {known}{more}"
            )
        required.add(found)
    return required


def _add_barriers(needs: list[set[int]], barriers: list[int]) -> None:
    """Makes each barrier wait for everything before it, and everything after it wait for it."""
    previous = -1
    for barrier in barriers:
        # the ones between two barriers wait for the first; the second waits for all of them
        needs[barrier].update(range(previous + 1, barrier))
        if previous >= 0:
            needs[barrier].add(previous)
            for position in range(previous + 1, barrier):
                needs[position].add(previous)
        previous = barrier
    if previous >= 0:
        for position in range(previous + 1, len(needs)):
            needs[position].add(previous)


def _reference(value: object) -> str | None:
    if type(value) is dict and len(value) == 1:
        target = value.get(OUTPUT_REFERENCE)
        if isinstance(target, str):
            return target
    return None


def _check_references(invocation: ToolInvocation, index: dict[str, int]) -> bool:
    """Whether the arguments use other outputs; checks that each is a declared dependency."""
    found = False
    allowed = set(invocation.depends_on)
    stack: list[object] = [invocation.arguments]
    while stack:
        value = stack.pop()
        target = _reference(value)
        if target is not None:
            if target not in allowed:
                where = "an invocation of this batch" if target in index else "no invocation"
                raise ValueError(
                    f"invocation {invocation.id!r} (tool {invocation.name!r}) uses the output "
                    f"of {target!r} ({where}) in its arguments, but its depends_on does not "
                    f"list it; add {target!r} to depends_on"
                )
            found = True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return found


def _resolve(value: Any, outputs: Sequence[Any], index: dict[str, int]) -> Any:
    target = _reference(value)
    if target is not None:
        return outputs[index[target]].content
    if isinstance(value, dict):
        return {key: _resolve(item, outputs, index) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, outputs, index) for item in value]
    return value
