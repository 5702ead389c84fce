"""Buffer: a bounded queue in front of a worker task that owns the inner service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self, TypeVar, final

import anyio
import anyio.lowlevel
from typing_extensions import override

from . import _reserve
from ._buffer_queue import CLOSED, DONE, QUEUED, RUNNING, Request, Run
from ._runtime import _in_trio
from ._service import Middleware, Service
from ._waiter import new_waiter
from .errors import ServiceClosed

if TYPE_CHECKING:
    from types import TracebackType


__all__ = ["Buffer", "BufferLayer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_NOT_RUNNING = (
    "buffer is not running: enter it first with `async with service:` "
    "(its worker task lives inside that block)"
)


@final
class Buffer(Middleware[ReqT, RespT], direct_call=True):
    """Queues requests (at most ``bound`` waiting) for a worker task that owns the inner service.

    The worker takes the requests in arrival order. For each, it waits until the inner
    service is ready, then starts ``inner.call(request)`` in a task of its own, so calls run
    concurrently behind the buffer (only readiness is serialised, as in tower), and hands the
    response or exception back to the caller. Callers therefore never wait on the inner
    service's readiness themselves, and a burst larger than the inner service can take waits
    in the queue, in order.

    The worker runs inside ``async with buffer:``; entering the buffer enters the inner service
    too. Leaving the block stops the worker, fails every queued request with `ServiceClosed`,
    and waits for the calls already running in the inner service to finish (their callers get
    their answers); if the task leaving the block is cancelled meanwhile, those calls are
    cancelled and their callers get `ServiceClosed`. No task survives the block.

    ``ready()`` waits for and reserves a place in the queue for the calling task. ``call()``
    uses the reservation (or waits for a place itself), queues the request and waits for its
    outcome. A caller cancelled while its request is queued takes it out of the queue: it never
    runs. A caller cancelled while its request runs cancels that call and waits for it to end:
    nothing runs on after its caller is gone.

    Raises:
        ServiceClosed: from ``ready()``, ``try_ready()`` and ``call()`` outside
            ``async with``, after the block ended, or after the worker failed because the inner
            service's ``ready()`` raised (then that error is the ``__cause__``).
    """

    __slots__ = ("_bound", "_run")

    def __init__(self, inner: Service[ReqT, RespT], bound: int) -> None:
        super().__init__(inner)
        self._bound = _check_bound(bound)
        self._run: Run | None = None

    def _running(self) -> Run:
        run = self._run
        if run is None:
            raise ServiceClosed(_NOT_RUNNING)
        if run.closed:
            raise run.closed_error("its `async with` block has ended") from run.cause
        return run

    @override
    async def ready(self) -> None:
        run = self._running()
        reservation = _reserve.held(self)
        if reservation is not None:
            if reservation.token is run:
                return
            _reserve.drop(self)  # made before the buffer was last restarted: worthless now
        _reserve.hold(self, await run.acquire_slot(), Run.release_slot)

    @override
    async def try_ready(self) -> bool:
        run = self._running()
        reservation = _reserve.held(self)
        if reservation is not None:
            if reservation.token is run:
                return True
            _reserve.drop(self)
        if not run.try_acquire_slot():
            return False
        _reserve.hold(self, run, Run.release_slot)
        return True

    @override
    async def call(self, request: ReqT) -> RespT:
        run = self._run
        if run is None:
            raise ServiceClosed(_NOT_RUNNING)
        reservation = _reserve.take(self)
        if reservation is None or reservation.token is not run:
            await run.acquire_slot()
        elif run.closed:
            raise run.closed_error("its `async with` block has ended") from run.cause
        message: Request[ReqT, RespT] = Request(request)
        run.queue.append(message)
        wakeup = run.wakeup
        if wakeup is not None:
            wakeup.wake()
        try:
            await message.waiter.wait()
        except BaseException:
            if message.status == QUEUED:  # never reached the inner service: drop it
                run.queue.remove(message)
                run.release_slot()
            elif message.status == RUNNING:  # cancel the call and wait until it has ended
                message.abandoned = True
                if message.scope is not None:
                    message.scope.cancel()
                if not message.finished:
                    waiter = message.waiter = new_waiter()
                    with anyio.CancelScope(shield=True):
                        await waiter.wait()
            raise
        if message.status == DONE:
            error = message.error
            if error is None:
                return message.response  # type: ignore[return-value]
            message.error = None
            try:
                raise error
            finally:
                del error  # the traceback holds this frame: do not let the frame hold it back
        if message.scope is not None:
            raise ServiceClosed(
                "buffer closed: its `async with` block was cancelled while the request ran"
            )
        detail = "its `async with` block ended before the request was sent on"
        raise run.closed_error(detail) from run.cause

    async def _work(self, run: Run) -> None:
        """The worker: waits for the inner service's readiness, then dispatches the next request."""
        inner = self.inner
        queue = run.queue
        task_group = run.task_group
        in_trio = _in_trio()
        call_task_name = f"towerpy buffer call to {inner!r}"  # named once, not per call
        try:
            with run.worker_scope:
                while True:
                    if not queue:
                        wakeup = run.wakeup = new_waiter()
                        await wakeup.wait()
                        run.wakeup = None
                        continue
                    await inner.ready()
                    if not queue:
                        # every request waiting was abandoned meanwhile: give the inner
                        # capacity back (the handoff drops it as soon as it is collected)
                        _reserve.detach()
                        continue
                    message = queue.popleft()
                    message.status = RUNNING
                    run.release_slot()
                    task_group.start_soon(
                        self._run_call, message, _reserve.detach(), name=call_task_name
                    )
                    if in_trio and queue:
                        # trio runs the tasks started in one batch in either order; yield so
                        # this call starts before the next one and requests stay in order
                        await anyio.lowlevel.checkpoint()
        except Exception as exc:  # the inner service cannot become ready: the buffer is done
            run.close(exc)

    async def _run_call(
        self, message: Request[ReqT, RespT], handoff: _reserve.Handoff | None
    ) -> None:
        """A call task: makes the inner call on the worker's reservation, records its outcome."""
        try:
            if message.abandoned:  # its caller left before this task ran: the handoff is dropped
                return
            _reserve.attach(handoff)
            with anyio.CancelScope() as scope:
                message.scope = scope
                try:
                    message.response = await self.inner.call(message.request)
                except Exception as exc:
                    message.error = exc
                message.status = DONE
        finally:
            message.finish(DONE if message.status == DONE else CLOSED)

    @override
    async def __aenter__(self) -> Self:
        """Enters the inner service and starts the worker.

        Raises:
            RuntimeError: The buffer is already running.
        """
        if self._run is not None:
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
        run = Run(self._bound, task_group)
        self._run = run
        task_group.start_soon(self._work, run, name=f"towerpy buffer worker for {self.inner!r}")
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops the worker, fails queued requests, waits for running calls, exits the inner."""
        run = self._run
        if run is None:
            return
        try:
            run.close(None)
            # the block's own exception keeps propagating after this method returns: pass
            # none to the task group, which would wrap it in an exception group
            await run.task_group.__aexit__(None, None, None)
        finally:
            self._run = None
            await self.inner.__aexit__(exc_type, exc, tb)

    @property
    def bound(self) -> int:
        """How many requests may wait in the queue (reservations included)."""
        return self._bound

    @property
    def running(self) -> bool:
        """Whether the worker is running and accepting requests."""
        run = self._run
        return run is not None and not run.closed

    def __repr__(self) -> str:
        return f"Buffer({self.inner!r}, bound={self._bound})"


def _check_bound(bound: int) -> int:
    if isinstance(bound, bool) or not isinstance(bound, int):
        raise TypeError(f"bound must be an int, got {type(bound).__name__}")
    if bound < 1:
        raise ValueError(
            f"bound must be >= 1 (how many requests may wait in the queue), got {bound}"
        )
    return bound


@final
class BufferLayer:
    """Layer of `Buffer`: each service it wraps gets its own queue of at most ``bound`` requests.

    Args:
        bound: How many requests may wait in the queue at once (reservations included).

    Raises:
        ValueError: ``bound`` is below 1.
    """

    __slots__ = ("_bound",)

    def __init__(self, bound: int) -> None:
        self._bound = _check_bound(bound)

    def layer(self, inner: Service[ReqT, RespT]) -> Buffer[ReqT, RespT]:
        """Wraps ``inner`` in a `Buffer`."""
        return Buffer(inner, self._bound)

    @property
    def bound(self) -> int:
        """How many requests may wait in the queue."""
        return self._bound

    def __repr__(self) -> str:
        return f"BufferLayer({self._bound})"
