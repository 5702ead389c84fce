"""One request on its way through a buffer: where it stands, and how its caller learns the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

from .._backend import new_waiter

if TYPE_CHECKING:
    from ..lowlevel import Handoff

__all__ = ["ABANDONED", "CLOSED", "GRANTED", "QUEUED", "WAITING", "Message"]

ReqT = TypeVar("ReqT")

# where a request stands
WAITING = 0  # waiting for a place in the queue
QUEUED = 1  # in the queue: the worker may be waiting for the inner service's readiness for it
GRANTED = 2  # the worker handed it the inner readiness: its caller makes the inner call
ABANDONED = 3  # its caller left before it was granted; the worker skipped it
CLOSED = 4  # the buffer closed before it was granted


class Queue(Protocol):
    """Where a request queues once it has a place: the buffer's `Worker` (which imports this)."""

    def enqueue(self, message: Message[Any]) -> None:
        """Puts ``message`` last in the queue."""
        ...


@final
class Message(Generic[ReqT]):
    """A request, its status, and the waiter its caller sleeps on until it is granted or closed.

    While it waits for a place it is in line in the queue's `Permits`: a place granted queues it.
    """

    __slots__ = (
        "cancelling",
        "fired",
        "handoff",
        "rank",
        "request",
        "scope",
        "status",
        "task",
        "waiter",
        "worker",
    )

    def __init__(self, request: ReqT, worker: Queue, rank: float = 0.0) -> None:
        self.request = request
        self.worker = worker
        self.rank = rank  # its place in a priority line (see towerpy._priority), made on arrival
        self.status = QUEUED
        self.waiter = new_waiter()
        self.handoff: Handoff | None = None  # the inner readiness, from the worker to the caller
        # how the exit cancels the running call (see .cancel): a cancel scope on trio; on
        # asyncio the caller's task and its cancellation count (set when the call starts)
        self.scope: Any = None
        self.task: Any = None
        self.fired = False  # the exit cancelled the call
        self.cancelling: int

    def grant(self) -> bool:
        """A place in the queue freed up for this request (it was waiting): queue it."""
        self.worker.enqueue(self)
        return True

    def refuse(self) -> None:
        """The buffer closed while this request waited for a place."""
        self.close()

    def close(self) -> None:
        """The buffer closed before this request was granted: wake its caller to say so."""
        self.status = CLOSED
        self.waiter.wake()
