"""The worker of a buffer: it sequences the inner service's readiness, one request at a time.

One `Worker` lives for one ``async with`` of a `Buffer`. Its task owns the inner service's
readiness: for the request at the head of the queue it awaits ``inner.ready()``, takes the
reservation that made (`towerpy.lowlevel.detach`) and hands it to that request's caller, then
moves on to the next request. The caller attaches the reservation and makes the inner call in
its own task, so calls run concurrently, each in its caller's context, cancelled with its
caller, and no task is spawned per call. A failing ``inner.ready()`` closes the worker: every
request still queued, and every later one, gets `ServiceClosed` caused by that error.

With priorities, the queue and the line for places are `towerpy._priority.PriorityLine`s: a
request's rank, made once when it arrives, orders it in both.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.lowlevel

from .. import _backend
from .._priority import PriorityLine
from .._waiter import Permits, Waiter, new_waiter
from ..errors import ServiceClosed
from ..lowlevel import detach
from .message import ABANDONED, GRANTED, QUEUED, WAITING, Message

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .._service import Service

__all__ = ["Worker"]


@final
class Worker:
    """One run of a buffer: its queue, its places, its running calls, and the worker loop."""

    __slots__ = (
        "cancelled",
        "cause",
        "closed",
        "drained",
        "ended",
        "line",
        "queue",
        "running",
        "scope",
        "slots",
        "task_group",
        "wakeup",
    )

    def __init__(
        self, bound: int, task_group: TaskGroup, line: PriorityLine[Any] | None = None
    ) -> None:
        self.task_group = task_group  # the worker task's, in the ``async with`` block
        self.line = line  # with priorities: the line for places (and the queue is another)
        self.slots = Permits(bound, line)  # queued requests and reservations each hold a place
        self.queue: OrderedDict[Message[Any], float] | PriorityLine[Message[Any]] = (
            OrderedDict() if line is None else PriorityLine(line.aging)
        )
        self.running: set[Message[Any]] = set()  # granted, until their inner call has ended
        self.scope = anyio.CancelScope()  # the worker loop's
        self.wakeup: Waiter | None = None  # the worker's, while it waits for a request
        self.drained: Waiter | None = None  # the exit's, while it waits for running calls
        self.closed = False  # no request is accepted or granted any more
        self.cancelled = False  # the exit was cancelled: running calls are cancelled too
        self.ended = False  # the ``async with`` block has ended
        self.cause: BaseException | None = None  # what made ``inner.ready()`` fail

    # --- the caller's side ----------------------------------------------------------------

    def wait_for_place(self, message: Message[Any]) -> None:
        """Puts a request in line for a place; it is queued when it gets one."""
        message.status = WAITING
        self.slots.wait(message, message.rank)

    def enqueue(self, message: Message[Any]) -> None:
        """Queues a request that holds a place, and wakes the worker if it waits for one."""
        message.status = QUEUED
        self.queue[message] = message.rank
        wakeup = self.wakeup
        if wakeup is not None:
            self.wakeup = None
            wakeup.wake()

    def withdraw(self, message: Message[Any]) -> None:
        """Undoes what the caller and the worker did for a request whose caller is leaving."""
        status = message.status
        if status == QUEUED:  # never reached the inner service: drop it, free its place
            del self.queue[message]
            self.slots.give()
        elif status == WAITING:
            self.slots.leave(message)
        elif status == GRANTED:  # granted but never called: give the inner readiness back
            message.handoff = None  # the handoff drops it as soon as it is collected
            self.finished(message)

    def finished(self, message: Message[Any]) -> None:
        """A granted request's inner call has ended (or will never be made)."""
        running = self.running
        running.discard(message)
        if not running and self.drained is not None:
            self.drained.wake()

    def closed_error(self, detail: str | None = None) -> ServiceClosed:
        """The error for a caller that arrives, or was still waiting, once the worker closed."""
        if self.cause is not None:
            detail = (
                "its worker failed waiting for the inner service to be ready "
                f"({type(self.cause).__name__}: {self.cause})"
            )
        elif detail is None:
            detail = "its `async with` block has ended"
            if self.ended:
                detail += " (enter it again to start a new worker)"
        return ServiceClosed(f"buffer closed: {detail}")

    # --- the worker task ------------------------------------------------------------------

    async def work(self, inner: Service[Any, Any]) -> None:
        """Waits for the inner service's readiness for each queued request, and grants it."""
        queue = self.queue
        running = self.running
        release = self.slots.give
        wakes_in_order = _backend.current().WAKES_IN_ORDER
        try:
            with self.scope:
                while True:
                    if not queue:
                        wakeup = self.wakeup = new_waiter()
                        await wakeup.wait()
                        continue
                    await inner.ready()
                    handoff = detach()
                    while queue:
                        message, _ = queue.popitem(last=False)
                        release()  # its place frees: the next request may queue
                        message.handoff = handoff
                        message.status = GRANTED
                        if message.waiter.wake():
                            running.add(message)
                            break
                        # its caller was cancelled just now: the readiness goes to the next
                        message.status = ABANDONED
                        message.handoff = None
                    # else: every request it was for has left; dropping the handoff gives the
                    # readiness back as soon as it is collected
                    del handoff
                    if not wakes_in_order and queue:
                        # trio runs the tasks it wakes together in either order: let this
                        # caller start its call before the next one is granted
                        await anyio.lowlevel.checkpoint()
        except Exception as exc:  # the inner service cannot become ready: the buffer is done
            self.close(exc)

    def close(self, cause: BaseException | None) -> None:
        """Stops granting, and fails every queued request and every caller waiting for a place."""
        if self.closed:
            return
        self.closed = True
        self.cause = cause
        queue = list(self.queue)
        self.queue.clear()
        for message in queue:
            message.close()
        self.slots.close()
        self.scope.cancel()

    # --- the ``async with`` block's exit --------------------------------------------------

    async def drain(self) -> None:
        """Waits until every granted call has ended; if cancelled, cancels them first.

        Call it after `close`: nothing is granted any more, so the set only shrinks.
        """
        try:
            while self.running:
                drained = self.drained = new_waiter()
                await drained.wait()
        except BaseException:
            self.cancelled = True
            for message in list(self.running):
                _backend.cancel(message)
            with anyio.CancelScope(shield=True):
                while self.running:
                    drained = self.drained = new_waiter()
                    await drained.wait()
            raise
        finally:
            self.drained = None
