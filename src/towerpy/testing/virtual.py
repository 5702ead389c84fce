"""Virtual time on both backends: an hour of waiting costs milliseconds, and times are exact.

On trio, use trio's own ``MockClock(autojump_threshold=0)``. On asyncio, `VirtualTimeEventLoop`
does the same: whenever every task is blocked, its clock jumps straight to the next scheduled
timer instead of sleeping. Both jump while a worker thread or real I/O is still busy, exactly as
trio's autojump does, so tests that wait on real processes or sockets run on the real clock.

`wait_all_tasks_blocked` returns once every other task is blocked without moving the clock, on
both backends (anyio's own version sleeps in 0.1 s steps on asyncio, which moves a virtual
clock, and costs 0.1 s of a real one whenever a task is still runnable).
"""

from __future__ import annotations

import asyncio
import math
import selectors
from typing import TYPE_CHECKING, Any

import anyio
from typing_extensions import override

from .._backend import running_loop
from .._validate import check_seconds

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["VirtualTimeEventLoop", "wait_all_tasks_blocked"]

_CHECKPOINTS = 100  # loop passes given to runnable tasks before anyio's 0.1 s steps


class _JumpingSelector(selectors.BaseSelector):
    """A selector that, instead of blocking until a timer is due, moves the loop's clock to it."""

    def __init__(self, loop: VirtualTimeEventLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        # Every task is blocked: first wake whoever waits for exactly that.
        loop = self._loop
        if loop._idle_waiters:
            waiters, loop._idle_waiters = loop._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            return []
        if timeout is None:  # no timer at all: only real I/O (a thread, a socket) can wake us
            return self._real.select(None)
        loop._jump_to_next_timer(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop whose clock starts at 0 and jumps to the next timer when idle.

    Use it through anyio's ``loop_factory`` backend option::

        @pytest.fixture
        def anyio_backend():
            return "asyncio", {"loop_factory": VirtualTimeEventLoop}

    or directly: ``asyncio.run(main(), loop_factory=VirtualTimeEventLoop)`` (Python 3.12+), or
    ``with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner: runner.run(main())``.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._resolution = 0.0  # the base class sets it (through the property below)
        self._idle_waiters: list[asyncio.Future[None]] = []
        real = selectors.DefaultSelector()
        super().__init__(real)
        # the base class keeps the selector it was given; swap in the jumping one around it
        self._selector = _JumpingSelector(self, real)

    @override
    def time(self) -> float:
        return self._now

    # The base loop runs a timer when its deadline is below ``time() + _clock_resolution``. With
    # the clock's own resolution (1 ns), that sum rounds back to ``time()`` once the clock passes
    # 2**24 s, so a timer due now would never run and the loop would spin. One unit in the last
    # place of the clock always moves the sum past it.
    @property
    def _clock_resolution(self) -> float:
        return max(self._resolution, math.ulp(self._now))

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:
        self._resolution = value

    def jump(self, seconds: float) -> None:
        """Moves the clock forward by ``seconds`` at once; timers that fall due run next.

        Raises:
            TypeError: ``seconds`` is not a number.
            ValueError: ``seconds`` is negative or NaN: time only moves forward.
        """
        check_seconds("seconds", seconds)
        self._now += seconds

    def _jump_to_next_timer(self, timeout: float) -> None:
        # the loop has just dropped cancelled timers from the head of its heap
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        # land exactly on the timer's deadline: adding the timeout could be off by a rounding
        # error, and the loop caps it at a day (a long sleep would take one pass per day)
        if scheduled:
            self._now = max(self._now, scheduled[0].when())
        else:  # pragma: no cover - the loop passes a timeout only when a timer is scheduled
            self._now += timeout

    async def _wait_idle(self) -> None:
        waiter: asyncio.Future[None] = self.create_future()
        self._idle_waiters.append(waiter)
        await waiter


async def wait_all_tasks_blocked() -> None:
    """Waits until every other task is blocked, without moving a virtual clock.

    On a `VirtualTimeEventLoop` this is exact. On another asyncio loop, tasks still runnable
    get a few loop passes first (a step usually wakes a few tasks that block again at once),
    then it is `anyio.wait_all_tasks_blocked`, as it is on trio.
    """
    loop = running_loop()  # None on trio
    if loop is not None:
        if isinstance(loop, VirtualTimeEventLoop):
            await loop._wait_idle()
            return
        this = asyncio.current_task()
        for _ in range(_CHECKPOINTS):
            await asyncio.sleep(0)
            if all(_blocked(task) for task in asyncio.all_tasks(loop) if task is not this):
                return
    await anyio.wait_all_tasks_blocked()


def _blocked(task: asyncio.Task[Any]) -> bool:
    # what anyio's version looks at: the future the task waits on (asyncio's own attribute;
    # without it, no task counts as blocked and anyio's version decides)
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()
