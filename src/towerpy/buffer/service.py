"""Buffer: a bounded queue in front of a worker task that owns the inner service's readiness."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Self, TypeVar, final

import anyio
from typing_extensions import override

from .. import _backend, _observe
from .._priority import DEFAULT_AGING, PriorityLine, check_aging, check_priority, priority_of
from .._service import Middleware, Service
from .._validate import check_positive_int
from ..errors import ServiceClosed
from ..lowlevel import attach, drop, held, hold, refuse_if_shedding, take
from .message import GRANTED, Message
from .worker import Worker

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType


__all__ = ["Buffer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_cancelled = functools.partial(
    ServiceClosed, "buffer closed: its `async with` block was cancelled while the request ran"
)
_NOT_RUNNING = (
    "buffer is not running: enter it first with `async with service:` "
    "(its worker task lives inside that block)"
)


def _release_place(worker: Worker) -> None:
    worker.slots.give()


@final
class Buffer(Middleware[ReqT, RespT], direct_call=True):
    """Queues requests (at most ``bound`` waiting) for a worker task that owns the inner service.

    The worker takes the requests in arrival order. For each, it waits until the inner service
    is ready, then hands that readiness (the reservation ``inner.ready()`` made) to the
    request's caller, which makes the inner call in its own task. Only readiness is serialised,
    as in tower: calls run concurrently behind the buffer, each in its caller's context (its
    context variables) and cancelled with its caller. Callers never wait on the inner service's
    readiness themselves, and a burst larger than the inner service can take waits in the
    queue, in order.

    The worker runs inside ``async with buffer:``; entering the buffer enters the inner service
    too. Leaving the block stops the worker, fails every queued request with `ServiceClosed`,
    and waits for the calls already granted to finish (their callers get their answers); if the
    task leaving the block is cancelled meanwhile, those calls are cancelled and their callers
    get `ServiceClosed`. The buffer can be entered again afterwards, which starts a new worker.

    ``ready()`` waits for and reserves a place in the queue for the calling task. ``call()``
    uses the reservation (or waits for a place itself), queues the request, waits for the
    worker to grant it, and makes the inner call. A caller cancelled while its request is
    queued takes it out of the queue: it never runs. A caller cancelled while its call runs
    cancels that call, as any cancelled task does.

    **Priorities.** With ``priority``, requests wait for a place and in the queue by the
    priority ``priority(request)`` returns, read when the request arrives: a higher number is
    granted first, equal numbers in arrival order. ``ready()`` does not know the request: its
    reservation waits for a place with priority 0. ``aging`` bounds how long a low priority can
    be passed over: a request of priority ``p`` that arrived at ``t`` is granted before any
    request of priority ``q`` that arrives after ``t + (q - p) * aging``. With the default
    ``aging=10.0``, each priority step is a head start of 10 s; ``aging=None`` makes priorities
    strict.

    Args:
        inner: The service the worker owns.
        bound: How many requests may wait in the queue at once (reservations included).
        priority: Returns a request's priority (an int; higher goes first), or None for
            first-in first-out.
        aging: Seconds of waiting worth one priority step, or None for strict priorities.

    Raises:
        ServiceClosed: from ``ready()``, ``try_ready()`` and ``call()`` outside
            ``async with`` (before it was entered, or after its block ended), or after the
            worker failed because the inner service's ``ready()`` raised (then that error is the
            ``__cause__``). Whatever ``priority`` raises, from ``call()``.
        TypeError: ``bound`` is not an int, or ``priority`` not a plain function.
        ValueError: ``bound`` is below 1, or ``aging`` not a finite number above 0.
    """

    __slots__ = ("_aging", "_bound", "_priority", "_worker")
    _towerpy_sheds = "stop"  # its inner service is readied by the worker, not the caller

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        bound: int,
        *,
        priority: Callable[[ReqT], int] | None = None,
        aging: float | None = DEFAULT_AGING,
    ) -> None:
        super().__init__(inner)
        self._bound = check_positive_int("bound", bound)
        check_priority(priority)
        self._aging = check_aging(aging)
        self._priority = priority
        self._worker: Worker | None = None

    def _accepting(self) -> Worker:
        worker = self._worker
        if worker is None:
            raise ServiceClosed(_NOT_RUNNING)
        if worker.closed:
            raise worker.closed_error() from worker.cause
        return worker

    @override
    async def ready(self) -> None:
        worker = self._accepting()
        reservation = held(self)
        if reservation is not None:
            if reservation.token is worker:
                return
            drop(self)  # made in an earlier run of the buffer: worthless now
        line = worker.line  # with priorities, a reservation waits with priority 0
        if not await worker.slots.take(0.0 if line is None else line.rank(0)):
            raise worker.closed_error() from worker.cause
        hold(self, worker, _release_place)

    @override
    async def try_ready(self) -> bool:
        worker = self._accepting()
        reservation = held(self)
        if reservation is not None:
            if reservation.token is worker:
                return True
            drop(self)
        if not worker.slots.take_nowait():
            return False
        hold(self, worker, _release_place)
        return True

    @override
    async def call(self, request: ReqT) -> RespT:
        worker = self._accepting()
        if self._priority is None:
            message: Message[ReqT] = Message(request, worker)
        else:
            message = Message(request, worker, self._rank(worker, request))
        reservation = take(self)
        if (reservation is not None and reservation.token is worker) or worker.slots.take_nowait():
            worker.enqueue(message)
        else:
            refuse_if_shedding(self)  # under a LoadShed: a full queue refuses, never waits
            worker.wait_for_place(message)
        try:
            queued = message.waiter.wait()
            await (queued if _observe.wait is None else _observe.wait("buffer", queued))
        except BaseException:
            worker.withdraw(message)
            raise
        if message.status != GRANTED:
            detail = "its `async with` block ended before the request was sent on"
            raise worker.closed_error(detail) from worker.cause
        # the worker granted this request the inner readiness: make the call here, in the
        # caller's task, on the reservation it handed over
        handoff = message.handoff
        message.handoff = None
        try:
            if worker.cancelled:  # the exit gave up waiting for granted calls
                raise ServiceClosed(
                    "buffer closed: its `async with` block was cancelled before the request ran"
                )
            attached = attach(handoff) if handoff is not None else ()
            del handoff
            try:
                # run so that the block's exit can cancel it (see towerpy._backend._cancel)
                result: RespT = await _backend.current().run_cancellable(
                    self.inner.call, message, _cancelled
                )
                return result
            finally:
                # what the inner call did not use (it failed before reaching the layer that
                # reserved it) goes back now, not when the caller's task ends
                for leftover in attached:
                    leftover.drop()
        finally:
            worker.finished(message)

    def _rank(self, worker: Worker, request: ReqT) -> float:
        try:
            priority = priority_of(self._priority, request)  # type: ignore[arg-type]
        except BaseException:
            drop(self)  # refused before the call: free the place ready() took
            raise
        return worker.line.rank(priority)  # type: ignore[union-attr]

    @override
    async def __aenter__(self) -> Self:
        """Enters the inner service and starts the worker.

        Raises:
            RuntimeError: The buffer is already running.
        """
        if self._worker is not None and not self._worker.ended:
            raise RuntimeError(
                "this buffer is already running: enter it in one `async with` at a time"
            )
        await self.inner.__aenter__()
        task_group = anyio.create_task_group()
        try:
            await task_group.__aenter__()
        except BaseException as exc:
            await self.inner.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        line = None if self._priority is None else PriorityLine[Any](self._aging)
        worker = Worker(self._bound, task_group, line)
        self._worker = worker
        task_group.start_soon(
            worker.work, self.inner, name=f"towerpy buffer worker for {self.inner!r}"
        )
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops the worker, fails queued requests, waits for granted calls, exits the inner."""
        worker = self._worker
        if worker is None or worker.ended:
            return
        try:
            worker.close(None)
            try:
                await worker.drain()
            finally:
                # the block's own exception keeps propagating after this method returns: pass
                # none to the task group, which would wrap it in an exception group
                await worker.task_group.__aexit__(None, None, None)
        finally:
            worker.ended = True
            await self.inner.__aexit__(exc_type, exc, tb)

    @property
    def bound(self) -> int:
        """How many requests may wait in the queue (reservations included)."""
        return self._bound

    @property
    def running(self) -> bool:
        """Whether the worker is running and accepting requests."""
        worker = self._worker
        return worker is not None and not worker.closed

    def __repr__(self) -> str:
        priority = "" if self._priority is None else f", priority={self._priority!r}"
        return f"Buffer({self.inner!r}, bound={self._bound}{priority})"
