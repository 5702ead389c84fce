"""Runs one worker function in the calling task, plus helper tasks started only when needed.

A batch of tool calls that finish without ever waiting (a lookup in memory, a cache hit) needs no
task at all: the calling task runs them one after the other, which is exactly what running them
concurrently would do, since none of them yields. Only when the calling task's call blocks does
the loop get to start helpers: then all those the batch can use at once (up to ``limit``
workers), so a batch of slow calls reaches ``limit`` concurrent workers a loop round later.

Every helper runs in an anyio cancel scope of its own, so cancelling the fan-out reaches each of
them the anyio way (shielded cleanup inside a tool is respected); nothing outlives `FanOut.run`.

A worker that finds nothing to take ends, and its place is free again: when calls become pending
later (a dependency graph releases the calls that waited on one that finished), the next
`FanOut.demand` starts helpers for them, up to ``limit`` workers. Helpers started but not yet
running count as spare: they will take pending calls, so no more are started for those.

- asyncio: the calling task schedules one cheap ``call_soon`` callback before each call it
  starts while more are pending; the callback runs only if that call blocks, and starts the
  helpers as plain asyncio tasks (an anyio task costs several times as much to start).
- trio: one anyio task group; one helper is started at once, and when it gets to run (the
  calling task's call blocked) it starts the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import anyio

from ._running import running_loop

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

__all__ = ["AsyncioFanOut", "FanOut", "TrioFanOut"]


class FanOut:
    """The handle workers use: `demand` before each call they start, `cancel` to stop them all."""

    __slots__ = ()

    def demand(self) -> None:
        """Called by a worker about to start a call while more are waiting to be taken."""
        raise NotImplementedError  # pragma: no cover

    def cancel(self) -> None:
        """Cancels every worker, the calling task's included; no new helper starts."""
        raise NotImplementedError  # pragma: no cover

    async def run(self) -> None:
        """Runs the workers; returns when all are done, raising what a helper raised."""
        raise NotImplementedError  # pragma: no cover


@final
class AsyncioFanOut(FanOut):
    __slots__ = (
        "_alive",
        "_cancelled",
        "_done",
        "_failures",
        "_handle",
        "_limit",
        "_loop",
        "_pending",
        "_running",
        "_scopes",
        "_spare",
        "_work",
    )

    def __init__(
        self, limit: int, pending: Callable[[], int], work: Callable[[FanOut], Awaitable[None]]
    ) -> None:
        self._limit = limit
        self._pending = pending
        self._work = work
        self._loop: asyncio.AbstractEventLoop = running_loop()
        self._alive = 1  # workers not yet ended: the calling task, and helpers
        self._spare = 0  # helpers started that have not yet run
        self._running = 0  # helpers not yet finished
        self._cancelled = False
        self._handle: asyncio.Handle | None = None
        self._done: asyncio.Future[None] | None = None
        self._scopes: list[anyio.CancelScope] = []
        self._failures: list[BaseException] = []

    def demand(self) -> None:
        if self._handle is None and self._alive < self._limit and not self._cancelled:
            # runs only once every worker is blocked: then a helper is worth its cost
            self._handle = self._loop.call_soon(self._grow)

    def _grow(self) -> None:
        self._handle = None
        if self._cancelled:
            return
        for _ in range(min(self._limit - self._alive, self._pending() - self._spare)):
            self._alive += 1
            self._spare += 1
            self._running += 1
            task = self._loop.create_task(self._helper())
            task.add_done_callback(self._finished)

    async def _helper(self) -> None:
        self._spare -= 1
        try:
            if self._cancelled:  # cancelled before it ran: it takes nothing
                return
            scope = anyio.CancelScope()  # made here: anyio needs a task to tell the backend
            self._scopes.append(scope)
            with scope:
                await self._work(self)
        finally:
            self._alive -= 1  # at once, not in the done callback: its place is free now

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running -= 1
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                self._failures.append(error)
                self.cancel()
        if not self._running and self._done is not None and not self._done.done():
            self._done.set_result(None)

    def cancel(self) -> None:
        self._cancelled = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for scope in self._scopes:
            scope.cancel()

    async def _helpers_done(self) -> None:
        while self._running:
            self._done = self._loop.create_future()
            await self._done

    async def run(self) -> None:
        """Runs the workers; returns when all are done, raising what a helper raised."""
        own = anyio.CancelScope()  # the calling task's worker, cancelled with the others
        self._scopes.append(own)
        try:
            with own:
                await self._work(self)
            self._alive -= 1
            await self._helpers_done()
        except BaseException:
            self.cancel()
            with anyio.CancelScope(shield=True):  # nothing may outlive the call
                await self._helpers_done()
            raise
        finally:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
        _raise(self._failures)


@final
class TrioFanOut(FanOut):
    __slots__ = ("_alive", "_cancelled", "_group", "_limit", "_pending", "_spare", "_work")

    def __init__(
        self, limit: int, pending: Callable[[], int], work: Callable[[FanOut], Awaitable[None]]
    ) -> None:
        self._limit = limit
        self._pending = pending
        self._work = work
        self._alive = 1  # workers not yet ended: the calling task, and helpers
        self._spare = 0  # helpers started that have not yet run
        self._cancelled = False
        self._group: Any = None

    def demand(self) -> None:
        if not self._spare and self._alive < self._limit and not self._cancelled:
            # the helper, once it runs (every worker is blocked), starts what else is needed
            self._grow(1, 0)

    def _grow(self, most: int, taking: int) -> None:
        wanted = self._pending() - self._spare - taking  # ``taking``: the caller's own next
        for _ in range(min(most, self._limit - self._alive, wanted)):
            self._alive += 1
            self._spare += 1
            self._group.start_soon(self._helper)

    async def _helper(self) -> None:
        self._spare -= 1
        try:
            if self._cancelled:
                return
            self._grow(self._limit, 1)  # this helper ran: the calling task's call blocked
            await self._work(self)
        finally:
            self._alive -= 1

    def cancel(self) -> None:
        self._cancelled = True
        self._group.cancel_scope.cancel()

    async def run(self) -> None:
        """Runs the workers; returns when all are done, raising what a helper raised."""
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                self._grow(1, 0)
                await self._work(self)
                self._alive -= 1
        except BaseExceptionGroup as group_error:
            _raise(list(group_error.exceptions))


def _raise(failures: list[BaseException]) -> None:
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise BaseExceptionGroup("tool batch workers failed", failures)
