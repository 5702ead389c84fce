"""OpenBatch: a batch of a `ParallelToolRouter` that takes its invocations one at a time.

A streamed model answer completes its tool calls one after another. Each can start the moment
its arguments are complete, under the same limit, timeouts, barriers and join policy as a batch
given whole to ``ParallelToolRouter.call``; the outputs still come back in call order.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import TYPE_CHECKING, Any, final

import anyio

from ._batch import Batch, current_batch
from ._failures import attach_outcomes, report_threads, stray_cancellation
from ._join import JoinPolicy
from .models import ToolOutput

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType
    from typing import Self

    from .._service import Service
    from .models import ToolInvocation

__all__ = ["OpenBatch"]

# a batch that may still grow counts as several invocations: without a catalog, a sequential
# tool refuses to run in it (it could not be kept apart from the calls still to come)
_GROWING = sys.maxsize


@final
class OpenBatch:
    """A batch still open to new invocations: each starts as soon as it is submitted.

    Made by `ParallelToolRouter.open_batch`, and used as an async context manager by the task
    that submits::

        async with parallel.open_batch() as batch:
            batch.submit(invocation)  # starts now, if the batch's limit allows
            ...
            outputs = await batch.results()  # in submission order

    `submit` never waits: an invocation beyond the router's ``limit`` waits its turn, first in
    first out; a sequential tool waits for those submitted before it, runs alone, and holds
    back those after it. `results` closes the batch (no more submissions), waits for every
    invocation, and applies the policy as ``ParallelToolRouter.call`` does:

    - `JoinPolicy.ISOLATE`: a failed invocation's output is an error output;
    - `JoinPolicy.JOIN_ALL`: raises the failure of the earliest failed invocation in
      submission order, every outcome attached as ``tool_outcomes``;
    - `JoinPolicy.FAIL_FAST`: the first failure cancels every invocation still running or
      waiting, and the body of the ``async with`` block as well (the code still submitting,
      such as the model stream being read); the failure is raised from the block.

    Leaving the block normally without calling `results` waits for the invocations the same way;
    leaving it with an exception, or cancelled, cancels every invocation still running or
    waiting. Nothing the batch started outlives the block. At most ``limit`` tasks are alive at
    once, one per invocation running.

    ``on_start(index, invocation)`` is called when an invocation takes its place in the batch
    (it then runs, or waits for the router's own capacity), ``on_finish(index, output, error)``
    when it has finished (``error`` is the exception of a failed one, whose ``output`` is then
    the error output `ISOLATE` would give). Both are plain functions, called in the task that
    makes the change; they must not raise or wait.
    """

    __slots__ = (
        "_barrier",
        "_batch",
        "_closed",
        "_describe",
        "_errors",
        "_failure",
        "_failure_index",
        "_group",
        "_idle",
        "_invocations",
        "_limit",
        "_on_finish",
        "_on_start",
        "_outputs",
        "_policy",
        "_queue",
        "_router",
        "_run_timed",
        "_running",
        "_sequential",
    )

    def __init__(
        self,
        router: Service[ToolInvocation, ToolOutput],
        limit: int,
        policy: JoinPolicy,
        *,
        run_timed: Callable[[ToolInvocation], Awaitable[ToolOutput]] | None,
        sequential: Callable[[str], bool] | None,
        describe: Callable[[ToolInvocation, Exception], str],
        on_start: Callable[[int, ToolInvocation], None] | None = None,
        on_finish: Callable[[int, ToolOutput, Exception | None], None] | None = None,
    ) -> None:
        self._router = router
        self._limit = limit
        self._policy = policy
        self._run_timed = run_timed
        self._sequential = sequential
        self._describe = describe
        self._on_start = on_start
        self._on_finish = on_finish
        self._invocations: list[ToolInvocation] = []
        self._outputs: list[Any] = []
        self._errors: dict[int, Exception] = {}  # JOIN_ALL: every failure, by index
        self._failure: Exception | None = None
        self._failure_index = -1
        self._queue: deque[int] = deque()
        self._running = 0
        self._barrier = False  # a sequential invocation runs: nothing else may start
        self._closed = False
        self._group: anyio.abc.TaskGroup | None = None
        self._idle: anyio.Event | None = None
        self._batch = Batch(_GROWING, sequential)

    @property
    def invocations(self) -> list[ToolInvocation]:
        """The invocations submitted so far, in order."""
        return list(self._invocations)

    def submit(self, invocation: ToolInvocation) -> int:
        """Adds an invocation to the batch; it starts now if the batch's limit allows.

        Returns:
            Its index: its place among the outputs of `results`.

        Raises:
            RuntimeError: The batch is not entered (``async with``), or already closed.
        """
        if self._group is None:
            raise RuntimeError(
                "submit() needs the batch entered: async with parallel.open_batch() as batch:"
            )
        if self._closed:
            raise RuntimeError("this batch is closed: results() was called, or the block left")
        index = len(self._invocations)
        self._invocations.append(invocation)
        self._outputs.append(None)
        if self._failure is None or self._policy is not JoinPolicy.FAIL_FAST:
            self._queue.append(index)
            self._fill()
        return index

    def _fill(self) -> None:
        # start what may start, in submission order
        queue = self._queue
        group = self._group
        assert group is not None
        while queue and self._running < self._limit and not self._barrier:
            index = queue[0]
            lookup = self._sequential
            if lookup is not None and lookup(self._invocations[index].name):
                if self._running:
                    return  # a barrier: it waits for those before it
                self._barrier = True
            queue.popleft()
            self._running += 1
            if self._on_start is not None:
                self._on_start(index, self._invocations[index])
            group.start_soon(self._run, index)

    async def _run(self, index: int) -> None:
        current_batch.set(self._batch)  # this task's own context: tools find their batch
        invocation = self._invocations[index]
        output: ToolOutput | None = None
        error: Exception | None = None
        try:
            if self._run_timed is not None:
                output = await self._run_timed(invocation)
            else:
                output = await self._router(invocation)
        except Exception as exc:
            error = exc
        except BaseException as exc:
            if not stray_cancellation(exc):
                raise
            error = RuntimeError(
                f"tool {invocation.name!r} raised {type(exc).__name__} although nothing "
                f"cancelled it (it awaited something another task cancelled)"
            )
            error.__cause__ = exc
        self._running -= 1
        self._barrier = False  # only a sequential invocation runs while it is set
        self._finished(index, invocation, output, error)
        if self._failure is None or self._policy is not JoinPolicy.FAIL_FAST:
            self._fill()
        self._check_idle()

    def _finished(
        self,
        index: int,
        invocation: ToolInvocation,
        output: ToolOutput | None,
        error: Exception | None,
    ) -> None:
        if error is None:
            assert output is not None
            self._outputs[index] = output
            if self._on_finish is not None:
                self._on_finish(index, output, None)
            return
        policy = self._policy
        if policy is JoinPolicy.FAIL_FAST and self._failure is not None:
            return  # failed while the batch was being cancelled: the first failure stands
        failed = ToolOutput(
            id=invocation.id,
            name=invocation.name,
            content=self._describe(invocation, error),
            is_error=True,
        )
        if policy is JoinPolicy.ISOLATE:
            self._outputs[index] = failed
        elif policy is JoinPolicy.JOIN_ALL:
            self._errors[index] = error
            if self._failure is None or index < self._failure_index:
                self._failure, self._failure_index = error, index
        else:  # FAIL_FAST: cancel everything, the submitting code included
            self._failure, self._failure_index = error, index
            self._queue.clear()
            assert self._group is not None
            self._group.cancel_scope.cancel()
        if self._on_finish is not None:
            self._on_finish(index, failed, error)

    def _check_idle(self) -> None:
        if self._closed and not self._running and not self._queue and self._idle is not None:
            self._idle.set()

    async def _drain(self) -> None:
        self._closed = True
        if self._running or self._queue:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _raise_failure(self) -> None:
        error = self._failure
        if error is None:
            return
        if self._policy is JoinPolicy.JOIN_ALL:
            attach_outcomes(error, self._invocations, self._outputs, self._errors)
        else:
            report_threads(error, self._batch)
        raise error

    async def results(self) -> list[ToolOutput]:
        """Closes the batch, waits for every invocation, and returns the outputs in order.

        Raises:
            Exception: Under `JoinPolicy.JOIN_ALL`, the earliest failure (see the class).
        """
        if self._group is None:
            raise RuntimeError("results() needs the batch entered: async with ... as batch:")
        await self._drain()
        self._raise_failure()
        return list(self._outputs)

    async def __aenter__(self) -> Self:
        if self._group is not None or self._closed:
            raise RuntimeError("an OpenBatch is entered once; open another for another batch")
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group = self._group
        assert group is not None
        waited: BaseException | None = None
        if exc is None:
            try:
                await self._drain()
            except BaseException as wait_error:  # cancelled: from outside, or by FAIL_FAST
                waited = wait_error
        self._closed = True
        if exc is not None or waited is not None:
            group.cancel_scope.cancel()
        # the block's own exception is never passed in: the task group would wrap it in a group
        await group.__aexit__(None, None, None)
        cancelled = anyio.get_cancelled_exc_class()
        if (
            self._failure is not None
            and self._policy is JoinPolicy.FAIL_FAST
            and (exc is None or isinstance(exc, cancelled))
        ):
            self._raise_failure()  # the cancellation came from the failure: raise the failure
        if waited is not None:
            raise waited
        if exc is None:
            self._raise_failure()

    def __repr__(self) -> str:
        return (
            f"OpenBatch(submitted={len(self._invocations)}, running={self._running}, "
            f"waiting={len(self._queue)}, policy={self._policy.name})"
        )
