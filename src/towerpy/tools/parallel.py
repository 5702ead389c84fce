"""ParallelToolRouter: runs a batch of invocations concurrently, bounded, in request order."""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any, final

import anyio
from typing_extensions import override

from .._runtime import current_time
from .._service import Service
from ..errors import Elapsed, ToolError
from .models import ToolInvocation, ToolOutput
from .router import ToolRouter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "JoinPolicy",
    "ParallelToolRouter",
    "check_options",
    "describe_failure",
    "find_attribute",
]

_MESSAGE_LIMIT = 1000  # characters of an error message shown to the model


class JoinPolicy(enum.Enum):
    """What a batch does when one of its invocations fails."""

    JOIN_ALL = "join_all"
    """Wait for every invocation, then raise the failure of the earliest failed one."""
    FAIL_FAST = "fail_fast"
    """On the first failure, cancel the rest and raise it."""
    ISOLATE = "isolate"
    """Never raise: a failed invocation's output has ``is_error=True`` and a message."""


def describe_failure(invocation: ToolInvocation, error: Exception) -> str:
    """Returns the short message a model reads when ``invocation`` failed with ``error``."""
    name = invocation.name
    if isinstance(error, TimeoutError):
        seconds = getattr(error, "seconds", None)
        if isinstance(seconds, int | float):
            return f"tool {name!r} timed out after {seconds:g} seconds"
        return f"tool {name!r} timed out"
    if isinstance(error, ToolError):
        text = str(error)  # already says which tool and what to send instead
    else:
        detail = str(error)
        kind = type(error).__name__
        text = (
            f"tool {name!r} failed: {kind}: {detail}" if detail else f"tool {name!r} failed: {kind}"
        )
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


@final
class _Batch:
    """The shared state of one batch: its outputs, and the failure that decides how it ends."""

    __slots__ = ("error", "error_index", "invocations", "outputs", "scope")

    def __init__(self, invocations: Sequence[ToolInvocation]) -> None:
        self.invocations = invocations
        self.outputs: list[Any] = [None] * len(invocations)
        self.error: Exception | None = None
        self.error_index = -1
        self.scope: anyio.CancelScope | None = None


@final
class ParallelToolRouter(Service[list[ToolInvocation], list[ToolOutput]], direct_call=True):
    """Runs a batch of tool invocations concurrently through one router.

    ``ready()`` returns at once (the invocations run in worker tasks, which wait for the
    router's capacity themselves). ``call(invocations)`` runs them with at most ``limit`` in
    flight, in at most ``limit`` worker tasks that pull the next invocation as they finish one,
    so a batch of 100 000 costs ``limit`` tasks and one list slot per invocation. It returns
    the outputs in the order of the invocations, whatever order they finish in.

    - `JoinPolicy.JOIN_ALL` runs everything, then raises the exception of the earliest failed
      invocation in request order.
    - `JoinPolicy.FAIL_FAST` cancels every invocation still running or waiting at the first
      failure and raises it; nothing keeps running once ``call()`` has returned.
    - `JoinPolicy.ISOLATE` never raises for a tool's failure: that output has ``is_error=True``
      and ``content`` a short message naming the tool and the error (`describe_failure`).

    ``tool_timeout`` bounds each invocation; one that runs longer is cancelled and fails with
    `Elapsed`. A sequential tool (``@tool(sequential=True)``, as told by the router's
    ``is_sequential(name)``) is a barrier: the invocations before it finish first, it runs alone,
    and those after it start only when it is done. Cancelling ``call()`` cancels every
    invocation of the batch.

    ``limit`` bounds one batch. For a bound shared by every batch (several agents using one
    router), put a `ConcurrencyLimitLayer` around the router: both bounds hold together.

    Args:
        router: Runs one invocation: a `ToolRouter`, perhaps wrapped in layers.
        limit: The most invocations of one batch in flight at once.
        policy: What happens when an invocation fails.
        tool_timeout: Seconds each invocation may run, or None for no bound.
        sequential: Tells which tool names are barriers (default: the ``is_sequential`` of the
            router, or of the `ToolRouter` found inside its layers).
        describe: Makes the message an `ISOLATE` error output carries (default:
            `describe_failure`).

    Raises:
        TypeError: ``router`` is not a service or ``policy`` not a `JoinPolicy`.
        ValueError: ``limit`` below 1 or ``tool_timeout`` not positive.
    """

    __slots__ = ("_describe", "_sequential", "limit", "policy", "router", "tool_timeout")

    def __init__(
        self,
        router: Service[ToolInvocation, ToolOutput],
        limit: int = 5,
        policy: JoinPolicy = JoinPolicy.ISOLATE,
        tool_timeout: float | None = None,
        *,
        sequential: Callable[[str], bool] | None = None,
        describe: Callable[[ToolInvocation, Exception], str] = describe_failure,
    ) -> None:
        check_options(router, limit, policy, tool_timeout)
        self.router = router
        self.limit = limit
        self.policy = policy
        self.tool_timeout = tool_timeout
        self._sequential = sequential if sequential is not None else _find_sequential(router)
        self._describe = describe

    @override
    async def call(self, request: list[ToolInvocation]) -> list[ToolOutput]:
        batch = _Batch(request)
        start = 0
        for barrier in self._barriers(request):
            await self._run(batch, start, barrier)
            if batch.error is not None and self.policy is JoinPolicy.FAIL_FAST:
                raise batch.error
            await self._run(batch, barrier, barrier + 1)  # alone: nothing else is running
            if batch.error is not None and self.policy is JoinPolicy.FAIL_FAST:
                raise batch.error
            start = barrier + 1
        await self._run(batch, start, len(request))
        if batch.error is not None:
            raise batch.error
        return batch.outputs

    def _barriers(self, invocations: Sequence[ToolInvocation]) -> Iterator[int]:
        lookup = self._sequential
        if lookup is None:
            return iter(())
        owner = getattr(lookup, "__self__", None)
        if isinstance(owner, ToolRouter) and not owner.has_sequential:
            return iter(())  # the common case: skip the scan
        return (i for i, invocation in enumerate(invocations) if lookup(invocation.name))

    async def _run(self, batch: _Batch, start: int, stop: int) -> None:
        count = stop - start
        if count <= 0:
            return
        if count == 1:  # no task needed for one invocation
            await self._work(batch, iter((start,)))
            return
        indices = iter(range(start, stop))
        async with anyio.create_task_group() as tg:
            batch.scope = tg.cancel_scope
            for _ in range(min(self.limit, count)):
                tg.start_soon(self._work, batch, indices)
        batch.scope = None

    async def _work(self, batch: _Batch, indices: Iterator[int]) -> None:
        # each worker pulls the next index from the shared iterator until it is exhausted
        router = self.router
        invocations = batch.invocations
        outputs = batch.outputs
        timeout = self.tool_timeout
        for index in indices:
            invocation = invocations[index]
            try:
                if timeout is None:
                    outputs[index] = await router(invocation)
                else:
                    with anyio.CancelScope(deadline=current_time() + timeout) as scope:
                        outputs[index] = await router(invocation)
                    if scope.cancelled_caught:
                        raise Elapsed(
                            f"tool {invocation.name!r} timed out after {timeout:g}s",
                            seconds=timeout,
                        )
            except Exception as exc:
                if self._failed(batch, index, invocation, exc):
                    return

    def _failed(
        self, batch: _Batch, index: int, invocation: ToolInvocation, error: Exception
    ) -> bool:
        """Applies the policy to one failure; returns True when the worker must stop."""
        policy = self.policy
        if policy is JoinPolicy.ISOLATE:
            message = self._describe(invocation, error)
            batch.outputs[index] = ToolOutput(
                id=invocation.id, name=invocation.name, content=message, is_error=True
            )
            return False
        if policy is JoinPolicy.JOIN_ALL:
            if batch.error is None or index < batch.error_index:
                batch.error, batch.error_index = error, index
            return False
        if batch.error is None:  # FAIL_FAST: the first failure wins, the rest are cancelled
            batch.error, batch.error_index = error, index
            if batch.scope is not None:
                batch.scope.cancel()
        return True

    def __repr__(self) -> str:
        timeout = "" if self.tool_timeout is None else f", tool_timeout={self.tool_timeout}"
        return (
            f"ParallelToolRouter({self.router!r}, limit={self.limit}, "
            f"policy={self.policy.name}{timeout})"
        )


def check_options(router: object, limit: object, policy: object, tool_timeout: object) -> None:
    """Checks the arguments of `ParallelToolRouter` and `ParallelToolsLayer`.

    Raises:
        TypeError: ``router`` is not a service or ``policy`` not a `JoinPolicy`.
        ValueError: ``limit`` below 1 or ``tool_timeout`` not positive.
    """
    if not isinstance(router, Service):
        raise TypeError(f"the router must be a Service (e.g. a ToolRouter), got {router!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")
    if not isinstance(policy, JoinPolicy):
        raise TypeError(f"policy must be a JoinPolicy (e.g. JoinPolicy.ISOLATE), got {policy!r}")
    if tool_timeout is not None and (
        isinstance(tool_timeout, bool)
        or not isinstance(tool_timeout, int | float)
        or not math.isfinite(tool_timeout)
        or tool_timeout <= 0
    ):
        raise ValueError(f"tool_timeout must be seconds > 0 or None, got {tool_timeout!r}")


def find_attribute(router: object, name: str) -> Any:
    """Returns ``router.<name>``, or that of the first service inside its layers that has one.

    Layers around a `ToolRouter` (a concurrency limit, a timeout) do not know which tools are
    sequential or what their specs are; the router inside does. Returns None when none has it.
    """
    seen: set[int] = set()
    service: object = router
    while service is not None and id(service) not in seen:
        seen.add(id(service))
        found = getattr(service, name, None)
        if found is not None:
            return found
        service = getattr(service, "inner", None)
    return None


def _find_sequential(router: object) -> Callable[[str], bool] | None:
    lookup = find_attribute(router, "is_sequential")
    return lookup if callable(lookup) else None
