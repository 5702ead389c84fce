"""ParallelToolRouter: runs a batch of invocations concurrently, bounded, in request order."""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, cast, final

import anyio
from typing_extensions import override

from .._priority import check_priority, priority_of
from .._service import Service
from .._validate import (
    check_instance,
    check_member,
    check_plain_function,
    check_positive_int,
    check_seconds,
)
from ..errors import DependencyFailed, Elapsed, WaitElapsed
from ._batch import Batch, Clock, current_batch, current_clock
from ._failures import attach_outcomes, describe_failure, report_threads
from ._graph import Graph
from ._join import Join, JoinPolicy, by_priority
from .models import ToolInvocation, ToolOutput
from .router import ToolCatalog, ToolRouter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from ._incremental import OpenBatch

__all__ = [
    "JoinPolicy",
    "ParallelToolRouter",
    "catalog_of",
    "check_options",
    "describe_failure",
]

_depends_on = attrgetter("depends_on")


@final
class ParallelToolRouter(Service[list[ToolInvocation], list[ToolOutput]], direct_call=True):
    """Runs a batch of tool invocations concurrently through one router.

    ``ready()`` returns at once (each invocation waits for the router's capacity itself).
    ``call(invocations)`` runs them with at most ``limit`` in flight, in the calling task and
    at most ``limit - 1`` helper tasks, started only when the calls already running are all
    waiting (a batch of calls that never wait runs in the calling task alone); each worker
    pulls the next invocation as it finishes one, so a batch of 100 000 costs at most
    ``limit`` tasks and one list slot per invocation. It returns the outputs in the order of
    the invocations, whatever order they finish in.

    - `JoinPolicy.JOIN_ALL` runs everything, then raises the exception of the earliest failed
      invocation in request order, unchanged, with every outcome attached to it as
      ``tool_outcomes`` (a `ToolOutput` or the exception, per invocation, in request order)
      and a note naming the failed invocations.
    - `JoinPolicy.FAIL_FAST` cancels every invocation still running or waiting at the first
      failure and raises it; nothing started by the batch keeps running once ``call()`` has
      returned, except the worker thread of a sync tool, which Python cannot stop: the error
      then carries a note naming each such tool whose thread was still running.
    - `JoinPolicy.ISOLATE` never raises for a tool's failure: that output has ``is_error=True``
      and ``content`` a short message naming the tool and the error (`describe_failure`).

    A tool that raises anyio's cancellation exception although nothing cancelled it (it awaited
    a future that another task cancelled) has failed: it counts as a `RuntimeError`, never as
    the batch being cancelled.

    ``tool_timeout`` bounds each tool's run: the clock starts once the invocation has its
    capacity (the router's ``ready()``, and the tool's own concurrency permit and worker
    thread, are not timed), and an invocation that runs longer is cancelled and fails with
    `Elapsed`. ``wait_timeout`` bounds the time an invocation may wait for that capacity
    before it starts; one that waits longer fails with `WaitElapsed` (an `Elapsed`), and
    `ISOLATE` tells the model it did not start. A sequential tool (``@tool(sequential=True)``)
    is a barrier: the invocations before it finish first, it runs alone, and those after it
    start only when it is done. Cancelling ``call()`` cancels every invocation of the batch.

    When invocations carry ``depends_on``, the batch is a `ToolGraph`: checked first (a cycle,
    an unknown id or a duplicate id raises `ValueError` before anything runs), then each
    invocation starts the moment the last of its dependencies has finished, within ``limit``,
    with ``{"$output": id}`` arguments replaced by those outputs. The dependents of a failed
    invocation never start: under `ISOLATE` each gets an error output naming the failed one
    (a `DependencyFailed`), under `JOIN_ALL` that is their outcome. A batch without any
    ``depends_on`` is scheduled exactly as before, at no extra cost but one look at each.

    ``limit`` bounds one batch. For a bound shared by every batch (several agents using one
    router), put a `ConcurrencyLimitLayer` around the router: both bounds hold together.

    With ``priority``, a batch larger than ``limit`` starts its invocations by priority: the
    highest first, request order among equal priorities. Everything else holds: the outputs
    come in request order, an invocation starts only after its ``depends_on`` (then, of those
    ready at once, the highest priority first), and a sequential tool is still a barrier
    (priorities order the invocations between two barriers). ``priority`` is read once per
    invocation, when the batch starts; a batch opened with `open_batch` starts each invocation
    as it is submitted, so priorities do not apply to it.

    Args:
        router: Runs one invocation: a `ToolRouter`, perhaps wrapped in layers.
        limit: The most invocations of one batch in flight at once.
        policy: What happens when an invocation fails.
        tool_timeout: Seconds each tool may run once started, or None for no bound.
        wait_timeout: Seconds each invocation may wait for capacity before it starts, or None
            for no bound.
        catalog: Tells which tools are sequential (default: ``router`` itself when it is a
            `ToolCatalog`, such as a `ToolRouter`). Give the `ToolRouter` here when ``router``
            wraps it in layers: without a catalog, a sequential tool refuses to run in a batch
            of several invocations (`ToolError`).
        sequential: Tells which tool names are barriers, overriding the catalog.
        describe: Makes the message an `ISOLATE` error output carries (default:
            `describe_failure`).
        priority: Returns an invocation's priority (an int; higher starts first), or None for
            request order.

    Raises:
        TypeError: ``router`` is not a service, ``policy`` not a `JoinPolicy`, ``catalog`` not
            a `ToolCatalog`, ``priority`` not a plain function, or a number of the wrong type.
            From ``call()``, ``priority`` returned something else than an int.
        ValueError: ``limit`` below 1, or a timeout not positive; from ``call()``, a batch
            whose dependencies form a cycle or name an id it does not have.
    """

    __slots__ = (
        "_catalog",
        "_describe",
        "_priority",
        "_sequential",
        "_timed",
        "limit",
        "policy",
        "router",
        "tool_timeout",
        "wait_timeout",
    )

    def __init__(
        self,
        router: Service[ToolInvocation, ToolOutput],
        limit: int = 5,
        policy: JoinPolicy = JoinPolicy.ISOLATE,
        tool_timeout: float | None = None,
        *,
        wait_timeout: float | None = None,
        catalog: ToolCatalog | None = None,
        sequential: Callable[[str], bool] | None = None,
        describe: Callable[[ToolInvocation, Exception], str] = describe_failure,
        priority: Callable[[ToolInvocation], int] | None = None,
    ) -> None:
        check_options(router, limit, policy, tool_timeout, wait_timeout)
        if sequential is not None:
            check_plain_function("sequential", sequential)
        check_plain_function("describe", describe)
        check_priority(priority)
        self._priority = priority
        self.router = router
        self.limit = limit
        self.policy = policy
        self.tool_timeout = tool_timeout
        self.wait_timeout = wait_timeout
        self._timed = tool_timeout is not None or wait_timeout is not None
        self._catalog = catalog_of(router, catalog)
        if sequential is not None:
            self._sequential: Callable[[str], bool] | None = sequential
        elif self._catalog is not None:
            self._sequential = self._catalog.is_sequential
        else:
            self._sequential = None
        self._describe = describe

    @property
    def catalog(self) -> ToolCatalog | None:
        """Where the batch reads which tools are sequential, or None."""
        return self._catalog

    @override
    async def call(self, request: list[ToolInvocation]) -> list[ToolOutput]:
        levels = None
        if self._priority is not None:
            levels = [priority_of(self._priority, invocation) for invocation in request]
        if any(map(_depends_on, request)):
            return await self._call_graph(request, levels)
        join = self._join(request)
        batch = Batch(len(request), self._sequential)
        token = current_batch.set(batch)  # the worker tasks inherit it
        try:
            start = 0
            order = None if levels is None else list(range(len(request)))
            for barrier in self._barriers(request):
                if order is not None:
                    order[start:barrier] = by_priority(levels, start, barrier)  # type: ignore[arg-type]
                await join.run(start, barrier, order)
                if join.error is not None and self.policy is JoinPolicy.FAIL_FAST:
                    break
                await join.run(barrier, barrier + 1)  # alone: nothing else is running
                if join.error is not None and self.policy is JoinPolicy.FAIL_FAST:
                    break
                start = barrier + 1
            else:
                if order is not None:
                    order[start:] = by_priority(levels, start, len(request))  # type: ignore[arg-type]
                await join.run(start, len(request), order)
        finally:
            current_batch.reset(token)
        return self._outputs(join, batch)

    def open_batch(
        self,
        *,
        on_start: Callable[[int, ToolInvocation], None] | None = None,
        on_finish: Callable[[int, ToolOutput, Exception | None], None] | None = None,
    ) -> OpenBatch:
        """Opens a batch that takes its invocations one at a time, each starting at once.

        For the tool calls of a streamed model answer: each is submitted the moment its
        arguments are complete, under this router's limit, timeouts, barriers and policy (see
        `OpenBatch`). ``call(invocations)`` is the same batch with every invocation known.

        Args:
            on_start: Called with ``(index, invocation)`` when an invocation takes its place.
            on_finish: Called with ``(index, output, error)`` when it has finished.
        """
        from ._incremental import OpenBatch  # here: that module imports this one

        return OpenBatch(
            self.router,
            self.limit,
            self.policy,
            run_timed=self._run_timed if self._timed else None,
            sequential=self._sequential,
            describe=self._describe,
            on_start=on_start,
            on_finish=on_finish,
        )

    async def _call_graph(
        self, request: list[ToolInvocation], levels: list[float] | None
    ) -> list[ToolOutput]:
        graph = Graph(request, sequential=self._barrier_lookup())  # raises before any runs
        join = self._join(request)

        def skip(dependent: int, failed: int, cause: Exception) -> Exception:
            invocation, dependency = request[dependent], request[failed]
            error = DependencyFailed(
                f"tool {invocation.name!r} (id {invocation.id!r}) did not run: it depends on "
                f"{dependency.id!r} (tool {dependency.name!r}), which failed",
                dependency=dependency.id,
            )
            error.__cause__ = cause
            return error

        batch = Batch(len(request), self._sequential)
        token = current_batch.set(batch)
        try:
            await join.run_graph(graph.schedule(), skip, graph.prepare(join.outputs), levels)
        finally:
            current_batch.reset(token)
        return self._outputs(join, batch)

    def _join(self, request: list[ToolInvocation]) -> Join[ToolInvocation]:
        call: Callable[[ToolInvocation], Awaitable[ToolOutput]] = (
            self._run_timed if self._timed else self.router
        )
        describe = self._describe

        def isolate(index: int, error: Exception) -> ToolOutput:
            invocation = request[index]
            return ToolOutput(
                id=invocation.id,
                name=invocation.name,
                content=describe(invocation, error),
                is_error=True,
            )

        def label(index: int) -> str:
            return f"tool {request[index].name!r}"

        return Join(request, call, self.limit, self.policy, isolate, label)

    def _outputs(self, join: Join[ToolInvocation], batch: Batch) -> list[ToolOutput]:
        error = join.error
        if error is not None:
            if self.policy is JoinPolicy.JOIN_ALL:
                assert isinstance(error, Exception)
                attach_outcomes(error, join.items, join.outputs, join.errors)
            elif isinstance(error, Exception):
                report_threads(error, batch)
            raise error
        return join.outputs

    def _barrier_lookup(self) -> Callable[[str], bool] | None:
        lookup = self._sequential
        owner = getattr(lookup, "__self__", None)
        if isinstance(owner, ToolRouter) and not owner.has_sequential:
            return None  # the common case: no tool to look up
        return lookup

    def _barriers(self, invocations: Sequence[ToolInvocation]) -> Iterator[int]:
        lookup = self._barrier_lookup()
        if lookup is None:
            return iter(())
        return (i for i, invocation in enumerate(invocations) if lookup(invocation.name))

    async def _run_timed(self, invocation: ToolInvocation) -> ToolOutput:
        router = self.router
        with anyio.CancelScope() as scope:
            clock = Clock(self.tool_timeout, self.wait_timeout, scope)
            await router.ready()  # not timed: waiting for capacity is not running
            clock.run()
            token = current_clock.set(clock)  # the tool pauses it while it waits itself
            try:
                return await router.call(invocation)
            finally:
                current_clock.reset(token)
        # only reached when the scope caught its own cancellation: a budget ran out
        if clock.waiting:
            wait = self.wait_timeout
            raise WaitElapsed(
                f"tool {invocation.name!r} did not start within {wait:g}s: it was waiting for "
                f"capacity",
                seconds=wait,
            )
        run = self.tool_timeout
        raise Elapsed(f"tool {invocation.name!r} timed out after {run:g}s", seconds=run)

    def __repr__(self) -> str:
        timeout = "" if self.tool_timeout is None else f", tool_timeout={self.tool_timeout}"
        wait = "" if self.wait_timeout is None else f", wait_timeout={self.wait_timeout}"
        priority = "" if self._priority is None else f", priority={self._priority!r}"
        return (
            f"ParallelToolRouter({self.router!r}, limit={self.limit}, "
            f"policy={self.policy.name}{timeout}{wait}{priority})"
        )


def check_options(
    router: object,
    limit: object,
    policy: object,
    tool_timeout: object,
    wait_timeout: object = None,
) -> None:
    """Checks the arguments of `ParallelToolRouter` and `ParallelToolsLayer`.

    Raises:
        TypeError: ``router`` is not a service, ``policy`` not a `JoinPolicy`, or a number of
            the wrong type.
        ValueError: ``limit`` below 1 or a timeout not positive.
    """
    check_instance("router", router, Service, "a Service (e.g. a ToolRouter)")
    check_positive_int("limit", limit)
    check_member("policy", policy, JoinPolicy)
    if tool_timeout is not None:
        check_seconds("tool_timeout", tool_timeout, positive=True, finite=True)
    if wait_timeout is not None:
        check_seconds("wait_timeout", wait_timeout, positive=True, finite=True)


def catalog_of(router: object, catalog: object) -> ToolCatalog | None:
    """Returns the explicit ``catalog``, else ``router`` when it is a `ToolCatalog`, else None.

    Raises:
        TypeError: ``catalog`` is given but is not a `ToolCatalog`.
    """
    if catalog is not None:
        what = "a ToolCatalog (a ToolRouter: its specs and sequential tools)"
        check_instance("catalog", catalog, ToolCatalog, what)
        return cast("ToolCatalog", catalog)
    if isinstance(router, ToolRouter):  # the common case, without a protocol check's cost
        return router
    return router if isinstance(router, ToolCatalog) else None
