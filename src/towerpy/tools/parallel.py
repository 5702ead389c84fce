"""ParallelToolRouter: runs a batch of invocations concurrently, bounded, in request order."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, cast, final

import anyio
from typing_extensions import override

from .._service import Service
from .._validate import (
    check_instance,
    check_member,
    check_plain_function,
    check_positive_int,
    check_seconds,
)
from ..errors import Elapsed, WaitElapsed
from ._batch import Batch, Clock, current_batch, current_clock
from ._failures import attach_outcomes, describe_failure, report_threads, stray_cancellation
from ._fanout import fan_out
from .models import ToolInvocation, ToolOutput
from .router import ToolCatalog, ToolRouter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from ._fanout import FanOut

__all__ = [
    "JoinPolicy",
    "ParallelToolRouter",
    "catalog_of",
    "check_options",
    "describe_failure",
]


class JoinPolicy(enum.Enum):
    """What a batch does when one of its invocations fails."""

    JOIN_ALL = "join_all"
    """Wait for every invocation, then raise the failure of the earliest failed one."""
    FAIL_FAST = "fail_fast"
    """On the first failure, cancel the rest and raise it."""
    ISOLATE = "isolate"
    """Never raise: a failed invocation's output has ``is_error=True`` and a message."""


@final
class _State:
    """The shared state of one batch: its outputs, the next invocation to take, and its failure."""

    __slots__ = (
        "end",
        "error",
        "error_index",
        "errors",
        "fanout",
        "invocations",
        "next",
        "outputs",
        "stopped",
    )

    def __init__(self, invocations: Sequence[ToolInvocation]) -> None:
        self.invocations = invocations
        self.outputs: list[Any] = [None] * len(invocations)
        self.error: Exception | None = None
        self.error_index = -1
        self.errors: dict[int, Exception] = {}  # JOIN_ALL: every failure, by index
        self.next = 0
        self.end = 0
        self.stopped = False  # FAIL_FAST failed: take no further invocation
        self.fanout: FanOut | None = None

    def pending(self) -> int:
        return self.end - self.next


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

    ``limit`` bounds one batch. For a bound shared by every batch (several agents using one
    router), put a `ConcurrencyLimitLayer` around the router: both bounds hold together.

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

    Raises:
        TypeError: ``router`` is not a service, ``policy`` not a `JoinPolicy`, ``catalog`` not
            a `ToolCatalog`, or a number of the wrong type.
        ValueError: ``limit`` below 1, or a timeout not positive.
    """

    __slots__ = (
        "_catalog",
        "_describe",
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
    ) -> None:
        check_options(router, limit, policy, tool_timeout, wait_timeout)
        if sequential is not None:
            check_plain_function("sequential", sequential)
        check_plain_function("describe", describe)
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
        state = _State(request)
        batch = Batch(len(request), self._sequential)
        token = current_batch.set(batch)  # the worker tasks inherit it
        try:
            start = 0
            for barrier in self._barriers(request):
                await self._run(state, start, barrier)
                if state.error is not None and self.policy is JoinPolicy.FAIL_FAST:
                    break
                await self._run(state, barrier, barrier + 1)  # alone: nothing else is running
                if state.error is not None and self.policy is JoinPolicy.FAIL_FAST:
                    break
                start = barrier + 1
            else:
                await self._run(state, start, len(request))
        finally:
            current_batch.reset(token)
        if state.error is not None:
            if self.policy is JoinPolicy.JOIN_ALL:
                attach_outcomes(state.error, state.invocations, state.outputs, state.errors)
            else:
                report_threads(state.error, batch)
            raise state.error
        return state.outputs

    def _barriers(self, invocations: Sequence[ToolInvocation]) -> Iterator[int]:
        lookup = self._sequential
        if lookup is None:
            return iter(())
        owner = getattr(lookup, "__self__", None)
        if isinstance(owner, ToolRouter) and not owner.has_sequential:
            return iter(())  # the common case: skip the scan
        return (i for i, invocation in enumerate(invocations) if lookup(invocation.name))

    async def _run(self, state: _State, start: int, stop: int) -> None:
        count = stop - start
        if count <= 0:
            return
        state.next, state.end = start, stop
        if count == 1 or self.limit == 1:  # one worker: the calling task alone
            state.fanout = None
            await self._work(state, None)
            return
        fanout = fan_out(self.limit, state.pending, lambda handle: self._work(state, handle))
        state.fanout = fanout
        try:
            await fanout.run()
        finally:
            state.fanout = None

    async def _work(self, state: _State, fanout: FanOut | None) -> None:
        # each worker takes the next index until none is left
        router = self.router
        invocations = state.invocations
        outputs = state.outputs
        timed = self._timed
        while state.next < state.end and not state.stopped:
            index = state.next
            state.next = index + 1
            if fanout is not None and index + 1 < state.end:
                fanout.demand()
            invocation = invocations[index]
            try:
                if timed:
                    outputs[index] = await self._run_timed(invocation)
                else:
                    outputs[index] = await router(invocation)
            except Exception as exc:
                if self._failed(state, index, invocation, exc):
                    return
            except BaseException as exc:
                if not stray_cancellation(exc):
                    raise
                error = RuntimeError(
                    f"tool {invocation.name!r} raised {type(exc).__name__} although nothing "
                    f"cancelled it (it awaited something another task cancelled)"
                )
                error.__cause__ = exc
                if self._failed(state, index, invocation, error):
                    return

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

    def _failed(
        self, state: _State, index: int, invocation: ToolInvocation, error: Exception
    ) -> bool:
        """Applies the policy to one failure; returns True when the worker must stop."""
        policy = self.policy
        if policy is JoinPolicy.ISOLATE:
            message = self._describe(invocation, error)
            state.outputs[index] = ToolOutput(
                id=invocation.id, name=invocation.name, content=message, is_error=True
            )
            return False
        if policy is JoinPolicy.JOIN_ALL:
            state.errors[index] = error
            if state.error is None or index < state.error_index:
                state.error, state.error_index = error, index
            return False
        if state.error is None:  # FAIL_FAST: the first failure wins, the rest are cancelled
            state.error, state.error_index = error, index
            state.stopped = True
            if state.fanout is not None:
                state.fanout.cancel()
        return True

    def __repr__(self) -> str:
        timeout = "" if self.tool_timeout is None else f", tool_timeout={self.tool_timeout}"
        wait = "" if self.wait_timeout is None else f", wait_timeout={self.wait_timeout}"
        return (
            f"ParallelToolRouter({self.router!r}, limit={self.limit}, "
            f"policy={self.policy.name}{timeout}{wait})"
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
