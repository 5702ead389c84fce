"""Worker threads for sync tools, bounded even when a caller stops waiting for its thread."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
import anyio.to_thread

from .. import _backend
from .._validate import check_positive_int

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_THREAD_LIMITER", "ThreadLimiter", "run_in_thread"]

T = TypeVar("T")


@final
class _Waiter:
    __slots__ = ("event", "granted", "schedule")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.schedule = _backend.current().threadsafe_scheduler()
        self.granted = False


@final
class ThreadLimiter:
    """Bounds how many worker threads sync tools occupy, process-wide.

    A thread counts from the moment it is granted until its function returns, even when the
    task that started it was cancelled (a timed-out sync tool returns at once, but Python cannot
    stop its thread): abandoned threads keep their slot, so a flood of timeouts cannot pile up
    unbounded threads. Waiters are served first-come first-served. One limiter may be shared by
    event loops in several threads.

    Args:
        total: The most threads running sync tools at once.

    Raises:
        TypeError: ``total`` is not an int.
        ValueError: ``total`` is below 1.
    """

    __slots__ = ("_abandoned", "_busy", "_lock", "_waiters", "total")

    def __init__(self, total: int) -> None:
        self.total = check_positive_int("total", total)
        self._busy = 0
        self._abandoned = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def busy(self) -> int:
        """Threads running (or granted to) a sync tool right now."""
        return self._busy

    @property
    def abandoned(self) -> int:
        """Threads still running a sync tool whose caller was cancelled and left."""
        return self._abandoned

    async def acquire(self) -> None:
        """Waits for a free thread slot and takes it."""
        with self._lock:
            if self._busy < self.total and not self._waiters:
                self._busy += 1
                return
            waiter = _Waiter()
            self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            with self._lock:
                handed = waiter.granted
                if not handed:
                    self._waiters.remove(waiter)
            if handed:  # the slot arrived just as we left: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Gives a slot back, to the first waiter if any. Callable from any thread."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                try:
                    waiter.schedule(waiter.event.set)
                except RuntimeError:  # its event loop has closed: nobody is waiting there
                    continue
                return
            self._busy -= 1

    def _abandon(self, count: int) -> None:
        with self._lock:
            self._abandoned += count

    def __repr__(self) -> str:
        return f"ThreadLimiter(total={self.total}, busy={self._busy}, abandoned={self._abandoned})"


DEFAULT_THREAD_LIMITER = ThreadLimiter(40)
"""The limiter sync tools share unless given their own: 40 threads, anyio's default too."""


@final
class _Started:
    __slots__ = ("abandoned", "finished", "lock", "started")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.finished = False
        self.abandoned = False

    def done(self) -> bool:
        return self.finished

    def left(self) -> bool:
        return self.abandoned


async def run_in_thread(
    fn: Callable[..., T],
    args: list[Any],
    kwargs: dict[str, Any],
    limiter: ThreadLimiter,
    *,
    started: Callable[[], object] | None = None,
    abandoned: Callable[[Callable[[], bool]], object] | None = None,
) -> T:
    """Runs ``fn(*args, **kwargs)`` in a worker thread that holds a slot of ``limiter``.

    Cancellation returns at once; the thread, which cannot be stopped, keeps its slot until
    ``fn`` returns, and counts in ``limiter.abandoned`` until then.

    Args:
        fn: The function.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
        limiter: Bounds the threads.
        started: Called once the slot is taken, just before the thread is asked for.
        abandoned: Called with a "thread is done" check when cancellation leaves the thread
            running.
    """
    await limiter.acquire()
    if started is not None:
        started()
    state = _Started()

    def work() -> T:
        with state.lock:
            if state.abandoned:  # cancelled before the thread started: do not run at all
                raise RuntimeError("the caller left before this thread started")
            state.started = True
        try:
            return fn(*args, **kwargs)
        finally:
            with state.lock:
                state.finished = True
                left = state.left()  # set meanwhile by the caller, which was cancelled
            if left:
                limiter._abandon(-1)
            limiter.release()

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except BaseException:
        with state.lock:
            never_ran = not state.started
            running = state.started and not state.finished
            state.abandoned = True
        if never_ran:
            limiter.release()
        elif running:
            limiter._abandon(1)
            if abandoned is not None:
                abandoned(state.done)
        raise
