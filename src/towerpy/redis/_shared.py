"""What a Redis limiter and its per-key views share: the client, wake-ups, background work.

Every object of this module lives in one process. Per limiter object there is:

- one pub/sub subscription, on a channel named after the object, on which the scripts publish
  the tickets that may go ahead: only the process that waits on a ticket is woken;
- a sender task: giving capacity back (``release``, ``refund``, ``charge``) and abandoning a
  ticket are synchronous calls that must never block, so they queue work that this task sends,
  batched (one script per key and kind), retried while Redis is unreachable;
- a renewal, every ``period``, queued to the sender like the rest (so it never overtakes a
  release): it renews the leases of this process's permits and tickets in one script per key,
  and wakes any waiter whose turn came without a message reaching it (pub/sub is at-most-once:
  it only speeds things up; this is the guarantee).

``flush()`` waits until everything queued so far has been sent, and every script a caller had
started has been answered: counters of work queued and sent, and of scripts started, tell it
when; each step of progress wakes it, it never polls.

They run inside ``async with limiter:``. Outside it, acquiring raises `ServiceClosed`.

Redis being unreachable or slow is decided here: each operation runs under ``op_timeout``;
then either `LimiterUnavailable` is raised or, with ``on_unavailable="allow"``, the request is
admitted unchecked and counted. Either way the first failure of an outage is logged, and so is
the recovery.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .. import _backend
from .._backend import current_time
from ..errors import LimiterUnavailable, ServiceClosed
from ._client import connect
from ._ticket import Ticket

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from ._client import Connection

__all__ = ["CHANNEL_PREFIX", "Shared", "Ticket", "Unreachable", "check_name", "check_policy"]

CHANNEL_PREFIX = "towerpy:wake:"

# The renewal goes through the sender's queue, never beside it: a renewal sent while a release
# of one of its permits is on the way could reach Redis second and bring the permit back.
_RENEW = ("renew",)

_log = logging.getLogger("towerpy.redis")


def check_name(name: object) -> str:
    """Returns a limiter name, or says what is wrong with it."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    if not name:
        raise ValueError(
            "name must not be empty: objects with the same name share one limit, on any machine"
        )
    return name


def check_policy(on_unavailable: object) -> Literal["raise", "allow"]:
    """Returns ``on_unavailable``, or says what is wrong with it."""
    if on_unavailable not in ("raise", "allow"):
        raise ValueError(
            f'on_unavailable must be "raise" (fail closed) or "allow" (fail open), got '
            f"{on_unavailable!r}"
        )
    return on_unavailable


class Unreachable(Exception):
    """Raised by `Shared.run_background` when Redis could not be reached; its cause says why."""


class Shared:
    """A limiter's connection, wake-up channel, background tasks and outage policy.

    A limiter and every view it makes (``for_key``) use one of these. Subclasses say how to
    send a batch of queued work and how to renew the leases of this process.

    Args:
        client: The user's Redis client.
        who: The limiter, for messages (``"RedisTokenBucket 'openai-tpm'"``).
        on_unavailable: ``"raise"`` or ``"allow"``.
        op_timeout: Seconds one operation may take before Redis counts as unreachable.
        period: Seconds between two renewals.
        ticket_lease: Seconds a ticket stays queued without being renewed; a waiter never
            sleeps longer than four times this without looking again.
    """

    def __init__(
        self,
        client: object,
        who: str,
        on_unavailable: Literal["raise", "allow"],
        op_timeout: float,
        period: float,
        ticket_lease: float,
    ) -> None:
        self.conn: Connection = connect(client, who)
        self.who = who
        self.allow = on_unavailable == "allow"
        self.op_timeout = op_timeout
        self.period = period
        self.ticket_lease = ticket_lease
        # the renewal re-checks every waiter each period; a waiter looks for itself this often
        # too, should the renewal be stuck
        self.lookout = 4 * ticket_lease
        self.owner = secrets.token_hex(8)
        self.channel = CHANNEL_PREFIX + self.owner
        self.tickets: dict[str, Ticket] = {}
        self.unchecked = 0
        self._numbers = itertools.count()
        self._unavailable: tuple[type[BaseException], ...] = (*self.conn.unavailable, TimeoutError)
        self._outage = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._pending: dict[Any, list[Any]] = {}
        self._work: anyio.Event | None = None
        self._dropped_logged = False
        # what flush() waits on: items queued and sent so far, and the scripts of callers
        # still waiting for their reply (numbered in the order they started)
        self._queued = 0
        self._sent = 0
        self._started = itertools.count()
        self._answering: dict[int, None] = {}
        self._progress: anyio.Event | None = None
        if _running_trio_or_asyncio():
            self.conn.check_backend(who)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether ``async with`` is open and the background tasks run."""
        return self._task_group is not None

    def check_running(self) -> None:
        """Raises `ServiceClosed` outside ``async with``."""
        if self._task_group is None:
            raise ServiceClosed(
                f"{self.who} is not running: enter it first with `async with limiter:` (its "
                f"lease renewal and wake-ups run inside that block)"
            )

    async def start(self) -> None:
        """Starts the background tasks (``__aenter__``)."""
        self.conn.check_backend(self.who)
        if self._task_group is not None:
            raise RuntimeError(f"{self.who} is already running: enter it in one `async with`")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._work = anyio.Event()
        subscribed = anyio.Event()
        task_group.start_soon(self._listen, subscribed, name=f"{self.who} wake-ups")
        task_group.start_soon(self._send_queued, name=f"{self.who} sender")
        task_group.start_soon(self._renew_every_period, name=f"{self.who} renewal")
        # wake-ups published before the subscription would be lost (the renewal would still
        # catch them): wait for it, but not for long: an unreachable Redis must not block here
        with anyio.move_on_after(self.op_timeout):
            # Open the pool's first connection from this task, which outlives the block. coredis
            # on trio keeps the task that opened a connection alive as long as the connection
            # (it is started with nursery.start), and a task kept alive keeps its unused
            # reservations: better this one than a request's.
            with contextlib.suppress(*self._unavailable):
                await self.conn.ping()
            await subscribed.wait()

    async def stop(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Sends what is queued, gives back what is held, stops the tasks (``__aexit__``)."""
        task_group = self._task_group
        if task_group is None:
            return
        try:
            self._task_group = None  # from here on, acquiring raises ServiceClosed
            for ticket in list(self.tickets.values()):
                ticket.wake()  # each waiter sees the limiter closed, and leaves
            with anyio.CancelScope(shield=True), anyio.move_on_after(2 * self.op_timeout):
                await self.give_back_held()
                batch, self._pending = self._pending, {}
                batch.pop(_RENEW, None)
                for target, items in batch.items():
                    with contextlib.suppress(Unreachable):  # logged; leases lapse on their own
                        await self.send(target, items, secrets.token_hex(8))
            task_group.cancel_scope.cancel()
        finally:
            await task_group.__aexit__(None, None, None)
            self._sent = self._queued  # sent by the close, or dropped with the sender
            self._progressed()

    async def flush(self) -> None:
        """Waits until the work queued so far is sent and the scripts under way are answered.

        Queued work (releases, refunds, charges, tickets withdrawn) is retried while Redis is
        unreachable, as long as each kind is kept; what is dropped then counts as done.
        """
        queued = self._queued
        started = next(self._started)  # every caller's script before this one
        while self._sent < queued or (self._answering and next(iter(self._answering)) < started):
            progress = self._progress
            if progress is None:
                progress = self._progress = anyio.Event()
            await progress.wait()

    def _progressed(self) -> None:
        progress = self._progress
        if progress is not None:
            self._progress = None
            progress.set()

    # --- operations ----------------------------------------------------------------------------

    def new_member(self) -> str:
        """Returns a fresh ticket (and permit) name, unique across processes."""
        return f"{self.owner}|{next(self._numbers)}"

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str]) -> list[Any] | None:
        """Runs one script for a caller, within ``op_timeout``.

        Returns:
            The reply; None when Redis could not be reached and the policy is ``"allow"``
            (the caller is admitted unchecked).

        Raises:
            LimiterUnavailable: Redis could not be reached, and the policy is ``"raise"``.
        """
        number = next(self._started)
        answering = self._answering
        answering[number] = None
        try:
            reply = await self._call(script, keys, args)
        except self._unavailable as exc:
            if isinstance(exc, self.conn.exhausted):
                raise  # the client's own message says to enlarge its pool
            self._lost(exc)
            if self.allow:
                self.unchecked += 1
                return None
            raise LimiterUnavailable(
                f"{self.who} could not reach redis at {self.conn.address} within "
                f"{self.op_timeout:g}s ({type(exc).__name__})",
                limiter=self.who,
                retry_after=max(1.0, self.op_timeout),
            ) from exc
        finally:
            del answering[number]
            if self._progress is not None:  # a flush() waits
                self._progressed()
        if self._outage:
            self._back()
        result: list[Any] = reply
        return result

    async def run_background(self, script: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        """Runs one script for a background task.

        Raises:
            Unreachable: Redis could not be reached in time (the outage is logged once).
        """
        try:
            reply = await self._call(script, keys, args)
        except self._unavailable as exc:
            if isinstance(exc, self.conn.exhausted):
                raise Unreachable(str(exc)) from exc  # retried, but not an outage
            self._lost(exc)
            raise Unreachable(str(exc)) from exc
        if self._outage:
            self._back()
        return reply

    async def _call(self, script: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        return await _backend.current().call_with_timeout(
            self.op_timeout, self.conn.run, script, keys, args
        )

    def _lost(self, exc: BaseException) -> None:
        if not self._outage:
            self._outage = True
            then = (
                "admitting requests unchecked until it answers (on_unavailable='allow')"
                if self.allow
                else "failing closed: requests raise LimiterUnavailable until it answers"
            )
            _log.warning(
                "%s: redis at %s is unreachable (%s: %s); %s",
                self.who,
                self.conn.address,
                type(exc).__name__,
                exc,
                then,
            )

    def _back(self) -> None:
        self._outage = False
        _log.warning("%s: redis at %s answers again", self.who, self.conn.address)

    # --- queued work (sync callers) -----------------------------------------------------------

    def enqueue(self, target: Any, item: Any) -> None:
        """Queues ``item`` for the sender; never blocks. Dropped (and logged) when closed."""
        if self._task_group is None:
            if not self._dropped_logged:
                self._dropped_logged = True
                _log.warning(
                    "%s: work given after `async with` closed is dropped (leases and tickets "
                    "lapse on their own)",
                    self.who,
                )
            return
        self._pending.setdefault(target, []).append(item)
        self._queued += 1
        work = self._work
        if work is not None:
            work.set()

    async def send(self, target: Any, items: list[Any], batch: str) -> None:
        """Sends one batch of queued work (subclasses); ``batch`` names it for retries.

        Raises:
            Unreachable: Redis could not be reached.
        """
        raise NotImplementedError

    def give_up_after(self, target: Any) -> float:
        """Seconds a batch is retried while Redis is unreachable (subclasses)."""
        raise NotImplementedError

    async def renew(self) -> None:
        """Renews this process's leases and wakes waiters whose turn came (subclasses).

        Raises:
            Unreachable: Redis could not be reached.
        """
        raise NotImplementedError

    async def give_back_held(self) -> None:
        """Gives back what this process still holds when the limiter closes (subclasses)."""

    # --- background tasks ------------------------------------------------------------------------

    async def _send_queued(self) -> None:
        while True:
            if not self._pending:
                self._work = work = anyio.Event()
                await work.wait()
            batch, self._pending = self._pending, {}
            queued = self._queued
            for target, items in batch.items():
                if target is _RENEW:
                    with contextlib.suppress(Unreachable):  # logged; the next period tries again
                        await self.renew()
                else:
                    await self._deliver(target, items)
            self._sent = queued
            self._progressed()

    async def _deliver(self, target: Any, items: list[Any]) -> None:
        batch = secrets.token_hex(8)  # the same name on every retry: applied once
        give_up = current_time() + self.give_up_after(target)
        delay = 0.05
        while True:
            try:
                await self.send(target, items, batch)
                return
            except Unreachable:
                if current_time() + delay > give_up:
                    _log.warning(
                        "%s: dropped %d queued update(s) after redis stayed unreachable",
                        self.who,
                        len(items),
                    )
                    return
            await anyio.sleep(delay)
            delay = min(2 * delay, 1.0)

    async def _renew_every_period(self) -> None:
        while True:
            await anyio.sleep(self.period)
            if self._task_group is not None and _RENEW not in self._pending:  # not closing
                self.enqueue(_RENEW, None)

    def _on_message(self, data: str) -> None:
        if data.startswith("A "):  # "A <seq> <time> <level> <ticket>": admitted on its behalf
            _, seq, stamp, level, member = data.split(" ", 4)
            ticket = self.tickets.get(member)
            if ticket is not None:
                ticket.admitted = ["A", seq, stamp, "", level, 0]
                ticket.wake()
            return
        wait, _, member = data.partition(" ")  # "<µs to wait> <ticket>": its turn may come
        ticket = self.tickets.get(member)
        if ticket is not None:
            ticket.wake(float(wait) / 1e6)

    async def _listen(self, subscribed: anyio.Event) -> None:
        delay = 0.05

        def ready() -> None:
            nonlocal delay
            delay = 0.05
            subscribed.set()
            for ticket in list(self.tickets.values()):
                ticket.wake()  # messages sent while the subscription was down are lost

        while True:
            try:
                await self.conn.listen(self.channel, ready, self._on_message)
            except Exception as exc:
                _log.debug("%s: wake-up subscription lost (%r); retrying", self.who, exc)
            await anyio.sleep(delay)
            delay = min(2 * delay, 1.0)


def _running_trio_or_asyncio() -> bool:
    """Whether an event loop runs now (a limiter may be made before any loop starts)."""
    try:
        import sniffio

        sniffio.current_async_library()
    except Exception:
        return False
    return True


def seconds(value: Any) -> float | None:
    """Reads a wait in µs from a reply item ('' when unknown)."""
    raw = value.decode() if isinstance(value, bytes) else str(value)
    return None if raw == "" else float(raw) / 1e6
