"""A request of this process waiting in a shared queue, and the ways it is woken."""

from __future__ import annotations

from typing import Any

from .._backend import Alarm, current_time, new_alarm

__all__ = ["Ticket"]


class Ticket:
    """One request of this process waiting in a shared queue, and how it is woken.

    Attributes:
        member: The ticket's name in the Redis queue.
        target: The key group (and limit) it waits on: the renewal task groups tickets by it.
        precise: True while its waiter sleeps until a known due time (a bucket's head); the
            renewal task leaves such a sleep alone.
    """

    __slots__ = ("_alarm", "_hint", "_signalled", "admitted", "member", "precise", "target")

    def __init__(self, member: str, target: Any) -> None:
        self.member = member
        self.target = target
        self.precise = False
        self.admitted: list[Any] | None = None  # the reply, when Redis admitted it on its behalf
        self._alarm: Alarm | None = None
        self._signalled = False
        self._hint: float | None = None

    def wake(self, wait: float | None = None) -> None:
        """Has the waiter look again; ``wait``: seconds until it may go ahead, if known."""
        self._signalled = True
        self._hint = wait
        if self._alarm is not None:
            self._alarm.wake()

    async def sleep(self, seconds: float, *, precise: bool) -> None:
        """Sleeps ``seconds`` or until woken; a wake that came in while awake ends it at once.

        A wake that says how long to wait (the head of a bucket, whose tokens are not there
        yet) turns into a sleep of that length, saving a round trip to ask.
        """
        while True:
            if self._signalled:
                self._signalled = False
                hint, self._hint = self._hint, None
                if hint is None or hint <= 0:
                    return
                seconds, precise = hint, True
            alarm = self._alarm = new_alarm()
            self.precise = precise
            try:
                if await alarm.sleep_until(current_time() + seconds):
                    return
            finally:
                self._alarm = None
                self.precise = False
