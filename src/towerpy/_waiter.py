"""One task waiting to be woken by another, and `Permits`, the wait queue built on that.

A limiter's waiters are woken one at a time, in order, by whoever gives capacity back.
`anyio.Event` looks the backend up each time one is made; these do not. On asyncio a waiter
is a bare future, which a cancellation of the waiting task cancels: `Waiter.wake` then reports
that nobody was woken, so the capacity goes to the next waiter instead.

`Permits` is the one wait queue built on them: a first-come first-served count of
interchangeable permits, handed straight to the first waiter when one is given back. The
concurrency limiter, the buffer's places and the mock service's allowances are all `Permits`.
Given a `towerpy._priority.PriorityLine` as its line, it serves waiters by priority instead.

An `Alarm` is a sleep until a deadline that another task may cut short: the first waiter of a
token bucket sleeps on one until its tokens are due, and a refund wakes it early. On asyncio it
is a future that a loop timer resolves at the deadline; on trio, a sleep in a cancel scope.
Neither raises on the common path (the deadline passes).

`Waiter`, `Alarm`, `new_waiter` and `new_alarm` are each backend's own: they live in
`towerpy._backend` (``._asyncio`` and ``._trio``) and are re-exported here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol, final

# the backend-specific primitives live in towerpy._backend; re-exported here for the limits
from ._backend import Alarm, Waiter, new_alarm, new_waiter

if TYPE_CHECKING:
    from ._priority import PriorityLine

__all__ = ["Alarm", "Grantee", "Permits", "Waiter", "new_alarm", "new_waiter"]


class Grantee(Protocol):
    """Whoever waits in `Permits` for a permit."""

    def grant(self) -> bool:
        """Receives a permit; returns False (keeping nothing) if it no longer wants one."""
        ...

    def refuse(self) -> None:
        """Learns that no permit will come: the permits were closed."""
        ...


@final
class _TaskGrantee:
    """A task waiting in `Permits.take`."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: Waiter = new_waiter()

    def grant(self) -> bool:
        return self.waiter.wake()  # False: it was cancelled and is leaving

    def refuse(self) -> None:
        self.waiter.wake()  # it sees that the permits closed


class Permits:
    """A first-come first-served count of permits: the one wait queue of towerpy's limits.

    A permit given back while others wait goes straight to the first of them (the count does
    not change), so a newcomer never overtakes a waiter. Waiters are tasks waiting in `take`,
    or any `Grantee` put in line with `wait` (a buffer's request, queued the moment it gets its
    place, so that requests keep their arrival order whatever order the backend wakes tasks
    in). They sit in an ordered dictionary: the first comes out and any one leaves in O(1).

    Given ``line``, a `towerpy._priority.PriorityLine` (the face of that ordered dictionary),
    waiters are served by rank, then arrival, instead: ``take`` and ``wait`` get the rank of
    each (``line.rank(priority)``); without it, the rank is kept and plays no part.

    Args:
        available: Permits free at the start.
        line: The line of waiters, if not first-come first-served.

    Attributes:
        available: Permits free now (a float so that ``math.inf`` can mean "no limit").
        closed: Whether `close` was called: permits are then neither handed out nor counted.
        queue: The waiters, first first: read it (empty or not) for a fast path of your own.
    """

    __slots__ = ("available", "closed", "queue")

    def __init__(self, available: float, line: PriorityLine[Grantee] | None = None) -> None:
        self.available = available
        self.queue: OrderedDict[Grantee, float] | PriorityLine[Grantee] = (
            OrderedDict() if line is None else line
        )
        self.closed = False

    @property
    def waiting(self) -> int:
        """How many wait for a permit."""
        return len(self.queue)

    def take_nowait(self) -> bool:
        """Takes a permit if one is free and nobody waits; tells whether it did."""
        if self.available >= 1 and not self.queue:
            self.available -= 1
            return True
        return False

    def wait(self, grantee: Grantee, rank: float = 0.0) -> None:
        """Puts ``grantee`` last in line (of its rank); its ``grant()`` is called with a permit."""
        self.queue[grantee] = rank

    def leave(self, grantee: Grantee) -> None:
        """Takes ``grantee`` out of line (it gave up); nothing happens if it was not there."""
        self.queue.pop(grantee, None)

    async def take(self, rank: float = 0.0) -> bool:
        """Waits for a permit, in line (arrival order, or ``rank`` first), and takes it.

        A task cancelled while waiting holds no permit afterwards: one handed to it as it was
        leaving goes on to the next waiter.

        Returns:
            True with a permit taken; False, holding nothing, when the permits were closed.
        """
        if self.available >= 1 and not self.queue:
            self.available -= 1
            return True
        if self.closed:
            return False
        grantee = _TaskGrantee()
        self.queue[grantee] = rank
        try:
            await grantee.waiter.wait()
        except BaseException:
            if grantee.waiter.woken:  # a permit was handed over just as we left: pass it on
                if not self.closed:
                    self.give()
            else:
                self.leave(grantee)
            raise
        return not self.closed

    def give(self) -> None:
        """Gives a permit back: straight to the first waiter that takes it, else counted free."""
        if self.closed:
            return
        waiters = self.queue
        while waiters:
            grantee, _ = waiters.popitem(last=False)
            if grantee.grant():
                return  # handed over: the count does not change
        self.available += 1

    def set_available(self, available: float) -> None:
        """Sets the permits free now (replacing the count), and hands them to waiters."""
        self.available = available
        waiters = self.queue
        while waiters and self.available >= 1:
            grantee, _ = waiters.popitem(last=False)
            if grantee.grant():
                self.available -= 1

    def close(self) -> None:
        """Refuses every waiter; from now on, permits are neither handed out nor counted."""
        self.closed = True
        waiters = list(self.queue)
        self.queue.clear()
        for grantee in waiters:
            grantee.refuse()
