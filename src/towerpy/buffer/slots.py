"""The places of a buffer's queue: a counter of free places, handed over first-come first-served.

This is the buffer's only semaphore logic, kept apart so that it can move onto the shared FIFO
wait queue as it is: `Slots` counts free places and keeps, in arrival order, whoever waits for
one. A waiter is anything with ``grant()`` (here is your place; False if it no longer wants one,
so the next waiter gets it) and ``refuse()`` (no place will come: the buffer closed). Two kinds
wait: a ``ready()`` that reserves a place (`PlaceWaiter`), and a call whose request is queued
the moment it gets one (the buffer's message), so requests keep their arrival order however the
backend orders the tasks it wakes together.

The waiters sit in an ordered dictionary: the first comes out and any one leaves in O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, final

from .._waiter import Waiter, new_waiter

__all__ = ["PlaceWaiter", "SlotWaiter", "Slots"]


class SlotWaiter(Protocol):
    """Whoever waits for a free place."""

    def grant(self) -> bool:
        """Receives a place; returns False (keeping nothing) if it no longer wants one."""
        ...

    def refuse(self) -> None:
        """Learns that no place will come: the buffer closed."""
        ...


@final
class PlaceWaiter:
    """A task waiting in ``ready()`` for a place to reserve."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: Waiter = new_waiter()

    def grant(self) -> bool:
        """Wakes the task with a place; False if it was cancelled and is leaving."""
        return self.waiter.wake()

    def refuse(self) -> None:
        """Wakes the task, which sees that the slots closed."""
        self.waiter.wake()


@final
class Slots:
    """``bound`` places: queued requests and reservations each hold one until it is given back."""

    __slots__ = ("available", "closed", "waiters")

    def __init__(self, bound: int) -> None:
        self.available = bound
        self.waiters: OrderedDict[SlotWaiter, None] = OrderedDict()
        self.closed = False

    def try_acquire(self) -> bool:
        """Takes a free place if there is one and nobody waits before us."""
        if self.available > 0 and not self.waiters:
            self.available -= 1
            return True
        return False

    def wait(self, waiter: SlotWaiter) -> None:
        """Puts ``waiter`` last in line; its ``grant()`` is called when a place is its."""
        self.waiters[waiter] = None

    def leave(self, waiter: SlotWaiter) -> None:
        """Takes ``waiter`` out of line (it gave up); nothing happens if it was not there."""
        self.waiters.pop(waiter, None)

    async def acquire(self) -> bool:
        """Waits for a place, first-come first-served.

        Returns:
            True with a place held; False, holding nothing, when the slots closed meanwhile.
        """
        if self.try_acquire():
            return True
        if self.closed:
            return False
        place = PlaceWaiter()
        self.wait(place)
        try:
            await place.waiter.wait()
        except BaseException:
            if not place.waiter.woken:
                self.leave(place)
            else:  # a place was handed over just as we left: pass it on
                self.release()
            raise
        return not self.closed

    def release(self) -> None:
        """Gives a place back: straight to the first waiter that takes it, else counted free."""
        if self.closed:
            return
        waiters = self.waiters
        while waiters:
            waiter, _ = waiters.popitem(last=False)
            if waiter.grant():
                return
        self.available += 1

    def close(self) -> None:
        """Refuses every waiter; from now on, places are neither handed out nor counted."""
        self.closed = True
        waiters = list(self.waiters)
        self.waiters.clear()
        for waiter in waiters:
            waiter.refuse()
