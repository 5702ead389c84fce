"""AgentPool: named agents, each with a quota of concurrent runs, under one global limit."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, final

import anyio
from typing_extensions import override

from .. import _observe
from .._backend import in_event_loop
from .._service import Middleware, Service
from .._validate import check_positive_int
from ..limit.concurrency import ConcurrencyLimit, ConcurrencyLimiter
from ..limit.protocols import ConcurrencyBackend
from .agent import AgentResult
from .messages import Message

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType
    from typing import Self

__all__ = ["AgentPool", "AgentService", "AgentStatistics"]

AgentService: TypeAlias = Service[str | list[Message], AgentResult]
"""What a pool runs: an `Agent`, or anything with the same requests and results."""


@dataclass(frozen=True, slots=True)
class AgentStatistics:
    """What one agent of an `AgentPool` is doing at one instant, and has done.

    Attributes:
        max_concurrent: The agent's quota of runs at once, or None when it has none (the
            pool's global limit still applies).
        running: Runs inside the agent now.
        waiting: Runs waiting for the agent's quota or for the pool's global limit.
        completed: Runs that returned a result.
        failed: Runs that started and raised (cancelled ones included).
    """

    max_concurrent: int | None
    running: int
    waiting: int
    completed: int
    failed: int


@final
class _Tally:
    """The counts behind one agent's `AgentStatistics`."""

    __slots__ = ("completed", "failed", "inside", "running")

    def __init__(self) -> None:
        self.inside = 0  # runs the pool has taken for this agent and not yet finished
        self.running = 0
        self.completed = 0
        self.failed = 0


@final
class _Admitted(Middleware[str | list[Message], AgentResult], direct_call=True):
    """The outermost layer of a pool's agent: counts the runs the pool holds for it."""

    __slots__ = ("_tally",)

    def __init__(self, inner: AgentService, tally: _Tally) -> None:
        super().__init__(inner)
        self._tally = tally

    @override
    async def call(self, request: str | list[Message]) -> AgentResult:
        tally = self._tally
        tally.inside += 1
        try:
            return await self.inner(request)
        finally:
            tally.inside -= 1


@final
class _Running(Middleware[str | list[Message], AgentResult], direct_call=True):
    """The innermost layer: past every limit, the run is running."""

    __slots__ = ("_tally",)

    def __init__(self, inner: AgentService, tally: _Tally) -> None:
        super().__init__(inner)
        self._tally = tally

    @override
    async def call(self, request: str | list[Message]) -> AgentResult:
        tally = self._tally
        tally.running += 1
        try:
            result = await self.inner(request)
        except BaseException:
            tally.failed += 1
            raise
        finally:
            tally.running -= 1
        tally.completed += 1
        return result


@final
class _Member:
    __slots__ = ("agent", "max_concurrent", "service", "tally")

    def __init__(
        self, agent: AgentService, service: AgentService, max_concurrent: int | None, tally: _Tally
    ) -> None:
        self.agent = agent
        self.service = service
        self.max_concurrent = max_concurrent
        self.tally = tally


@final
class AgentPool:
    """Named agents, each with its quota of concurrent runs, sharing one global limit.

    ``pool.add("researcher", agent, max_concurrent=2)`` registers an agent; ``await
    pool.run("researcher", prompt)`` runs it. Each agent gets at most its ``max_concurrent``
    runs at once (``default_quota`` when it gives none), and all of them together at most the
    pool's ``max_concurrent``; a run over either bound waits, first come first served, for a
    run of the same agent (or of any, for the global limit) to finish. An agent's quota is
    taken before the global limit, so runs of an agent at its quota never hold global places
    that other agents could use.

    The pool is made of towerpy's own layers: each agent is wrapped, outermost first, in a
    `ConcurrencyLimit` for its quota and a `ConcurrencyLimit` on the pool's shared
    `ConcurrencyLimiter`. ``pool[name]`` is that wrapped service, a
    ``Service[str | list[Message], AgentResult]`` like the agent itself, so it can be a step of
    a workflow (``Sequential(pool["researcher"], ...)``) or go under more layers, and the
    quotas still hold. Pass ``limiter=`` (any `ConcurrencyBackend`, e.g. a Redis one) instead of
    ``max_concurrent`` to share the global limit with other pools or processes.

    Why "pool": like a worker pool, it is a fixed budget of concurrent work (the global
    limit) shared by its members; unlike `towerpy.Balance`, its members are not
    interchangeable: a run names the agent it wants.

    Args:
        max_concurrent: The most runs of all agents at once, or None for no global limit.
        default_quota: The most runs at once of an agent added without ``max_concurrent``, or
            None for no quota of its own.
        limiter: A shared limiter for the global limit, instead of ``max_concurrent``.

    Raises:
        ValueError: A bound below 1, or both ``max_concurrent`` and ``limiter``.
        TypeError: A bound that is not an int, or ``limiter`` that is not a limiter.
    """

    __slots__ = ("_default_quota", "_limiter", "_members", "_stacks")

    def __init__(
        self,
        max_concurrent: int | None = None,
        *,
        default_quota: int | None = None,
        limiter: ConcurrencyBackend | None = None,
    ) -> None:
        if max_concurrent is not None and limiter is not None:
            raise ValueError(
                "AgentPool takes max_concurrent or limiter=, not both; the limiter already has "
                "its max_in_flight"
            )
        if max_concurrent is not None:
            limiter = ConcurrencyLimiter(check_positive_int("max_concurrent", max_concurrent))
        elif limiter is not None and not isinstance(limiter, ConcurrencyBackend):
            raise TypeError(
                f"limiter must be a ConcurrencyLimiter (or another ConcurrencyBackend), got "
                f"{type(limiter).__name__}"
            )
        if default_quota is not None:
            check_positive_int("default_quota", default_quota)
        self._limiter = limiter
        self._default_quota = default_quota
        self._members: dict[str, _Member] = {}
        self._stacks: list[contextlib.AsyncExitStack] = []

    @property
    def limiter(self) -> ConcurrencyBackend | None:
        """The global limit shared by every agent of the pool, or None."""
        return self._limiter

    @property
    def default_quota(self) -> int | None:
        """The quota of an agent added without ``max_concurrent``."""
        return self._default_quota

    def add(
        self, name: str, agent: AgentService, *, max_concurrent: int | None = None
    ) -> AgentService:
        """Registers ``agent`` under ``name``.

        Args:
            name: The name runs ask for.
            agent: An `Agent`, or any service of the same requests and results (an agent
                under layers, a workflow of agents).
            max_concurrent: The agent's quota of runs at once (default: the pool's
                ``default_quota``).

        Returns:
            The agent wrapped in its quota and the global limit: what `run` calls.

        Raises:
            ValueError: ``name`` is taken or empty, or ``max_concurrent`` below 1.
            TypeError: ``name`` is not a str, ``agent`` not a service, or ``max_concurrent``
                not an int.
        """
        if not isinstance(name, str):
            raise TypeError(f"an agent's name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("an agent's name must not be empty")
        if name in self._members:
            raise ValueError(f"the pool already has an agent named {name!r}; choose another name")
        if not isinstance(agent, Service):
            raise TypeError(f"AgentPool.add() needs an Agent (a Service), got {agent!r}")
        quota = self._default_quota
        if max_concurrent is not None:
            quota = check_positive_int("max_concurrent", max_concurrent)
        tally = _Tally()
        service: AgentService = _Running(agent, tally)
        if self._limiter is not None:
            service = ConcurrencyLimit(service, limiter=self._limiter)
        if quota is not None:
            service = ConcurrencyLimit(service, quota)
        service = _Admitted(service, tally)
        self._members[name] = _Member(agent, service, quota, tally)
        _observe.name(agent, name)  # its spans: invoke_agent {name}
        return service

    def __getitem__(self, name: str) -> AgentService:
        """The agent ``name`` wrapped in its quota and the global limit.

        Raises:
            KeyError: No agent has that name (the message lists those there are).
        """
        return self._member(name).service

    def agent(self, name: str) -> AgentService:
        """The agent registered as ``name``, as it was given to `add` (without the quotas).

        Raises:
            KeyError: No agent has that name.
        """
        return self._member(name).agent

    def _member(self, name: str) -> _Member:
        member = self._members.get(name)
        if member is None:
            known = ", ".join(map(repr, self._members)) or "none yet"
            raise KeyError(f"no agent named {name!r} in the pool; its agents: {known}")
        return member

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    async def run(self, name: str, prompt: str | list[Message]) -> AgentResult:
        """Runs the agent ``name`` on ``prompt``, within its quota and the global limit.

        Raises:
            KeyError: No agent has that name.
        """
        return await self._member(name).service(prompt)

    def run_sync(
        self, name: str, prompt: str | list[Message], *, backend: str = "asyncio"
    ) -> AgentResult:
        """Runs `run` in a new event loop, for scripts and notebooks without one.

        Raises:
            RuntimeError: Called from inside a running event loop; ``await pool.run(...)``
                there instead.
            KeyError: No agent has that name.
        """
        if in_event_loop():
            raise RuntimeError(
                "AgentPool.run_sync() cannot be called from inside a running event loop; "
                "use `await pool.run(...)` there instead"
            )
        member = self._member(name)  # before the loop: an unknown name fails at once
        result: AgentResult = anyio.run(member.service, prompt, backend=backend)
        return result

    def statistics(self) -> dict[str, AgentStatistics]:
        """What each agent is doing, by name, in the order they were added."""
        return {
            name: AgentStatistics(
                max_concurrent=member.max_concurrent,
                running=member.tally.running,
                waiting=member.tally.inside - member.tally.running,
                completed=member.tally.completed,
                failed=member.tally.failed,
            )
            for name, member in self._members.items()
        }

    async def __aenter__(self) -> Self:
        """Enters every agent (for layers with background work), in the order they were added."""
        async with contextlib.AsyncExitStack() as stack:
            for member in self._members.values():
                await stack.enter_async_context(member.service)
            self._stacks.append(stack.pop_all())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Exits the agents entered by `__aenter__`, in reverse order."""
        if self._stacks:
            await self._stacks.pop().__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        names = ", ".join(map(repr, self._members))
        return f"AgentPool([{names}], limiter={self._limiter!r})"
