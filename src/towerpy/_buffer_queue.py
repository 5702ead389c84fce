"""The queue of a running `Buffer`: its requests, its free places, and what became of each."""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio

from ._waiter import Waiter, new_waiter
from .errors import ServiceClosed

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["CLOSED", "DONE", "QUEUED", "RUNNING", "Request", "Run"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

# what became of a request
QUEUED = 0  # waiting in the queue (the worker may be waiting for the inner service's readiness)
RUNNING = 1  # handed to a call task of its own
DONE = 2  # the inner call returned or raised
CLOSED = 3  # the buffer closed before it could answer


@final
class Request(Generic[ReqT, RespT]):
    """One request on its way through the buffer, and how its caller learns the outcome."""

    __slots__ = (
        "abandoned",
        "error",
        "finished",
        "request",
        "response",
        "scope",
        "status",
        "waiter",
    )

    def __init__(self, request: ReqT) -> None:
        self.request = request
        self.status = QUEUED
        self.waiter = new_waiter()  # the caller's, woken when the outcome is known
        self.finished = False
        self.response: RespT | None = None
        self.error: Exception | None = None
        self.scope: anyio.CancelScope | None = None  # the running call's, to cancel it
        self.abandoned = False  # its caller left after it was dispatched

    def finish(self, status: int) -> None:
        self.status = status
        self.finished = True
        self.waiter.wake()


@final
class Run:
    """One ``async with`` of a buffer: its queue, its free slots, its worker and its tasks."""

    __slots__ = (
        "available",
        "cause",
        "closed",
        "queue",
        "slot_waiters",
        "task_group",
        "wakeup",
        "worker_scope",
    )

    def __init__(self, bound: int, task_group: TaskGroup) -> None:
        self.available = bound  # slots: requests queued or reserved count against the bound
        self.slot_waiters: deque[Waiter] = deque()
        self.queue: deque[Request[Any, Any]] = deque()
        self.task_group = task_group
        self.worker_scope = anyio.CancelScope()
        self.wakeup: Waiter | None = None  # the worker's, while it waits for a request
        self.closed = False
        self.cause: BaseException | None = None

    def closed_error(self, detail: str) -> ServiceClosed:
        if self.cause is not None:
            detail = (
                f"its worker failed waiting for the inner service to be ready "
                f"({type(self.cause).__name__}: {self.cause})"
            )
        return ServiceClosed(f"buffer closed: {detail}")

    async def acquire_slot(self) -> Run:
        if self.closed:
            raise self.closed_error("its `async with` block has ended") from self.cause
        if self.available > 0 and not self.slot_waiters:
            self.available -= 1
            return self
        waiter = new_waiter()
        self.slot_waiters.append(waiter)
        try:
            await waiter.wait()
        except BaseException:
            if not waiter.woken:
                with contextlib.suppress(ValueError):  # release_slot may have skipped it
                    self.slot_waiters.remove(waiter)
            elif not self.closed:  # a slot was handed over just as we left: pass it on
                self.release_slot()
            raise
        if self.closed:
            raise self.closed_error("its `async with` block has ended") from self.cause
        return self

    def try_acquire_slot(self) -> bool:
        if self.available > 0 and not self.slot_waiters:
            self.available -= 1
            return True
        return False

    def release_slot(self) -> None:
        if self.closed:
            return
        waiters = self.slot_waiters
        while waiters:
            if waiters.popleft().wake():  # hand the slot straight to the first waiter
                return
        self.available += 1

    def close(self, cause: BaseException | None) -> None:
        """Stops the worker and fails every queued request and every caller waiting for a slot."""
        if self.closed:
            return
        self.closed = True
        self.cause = cause
        for message in self.queue:
            message.finish(CLOSED)
        self.queue.clear()
        for waiter in self.slot_waiters:
            waiter.wake()
        self.slot_waiters.clear()
        self.worker_scope.cancel()
