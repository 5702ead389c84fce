"""RedisConcurrencyLimiter: one in-flight bound for every process on every machine, in Redis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self, final

from .._validate import check_positive_int, check_positive_number
from ..limit.protocols import ConcurrencyStatistics
from . import _lua
from ._client import text
from ._shared import CHANNEL_PREFIX, Shared, Ticket, _log, check_name, check_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping
    from types import TracebackType

    from .keyed import RedisKeyedConcurrencyLimitLayer

__all__ = ["RedisConcurrencyLimiter", "RedisConcurrencyStatistics"]

_UNCHECKED = object()  # the permit of a request admitted while Redis was unreachable


@dataclass(frozen=True, slots=True)
class RedisConcurrencyStatistics(ConcurrencyStatistics):
    """What a Redis concurrency limit is doing, as its last answer from Redis said.

    ``in_flight`` and ``waiting`` count every process, as of this object's last operation.

    Attributes:
        held_here: Permits this process holds now (running calls and reservations).
        waiting_here: Requests of this object waiting now.
        unchecked: Requests admitted without the limit because Redis could not be reached
            (``on_unavailable="allow"``), since the limiter was made.
    """

    held_here: int
    waiting_here: int
    unchecked: int


def _keys(name: str) -> tuple[str, str, str, str]:
    tag = "{towerpy:permits:" + name + "}"  # one hash tag: one Cluster slot
    return tag + ":h", tag + ":q", tag + ":l", tag + ":s"


@final
class _Permits(Shared):
    """The shared part of a limiter: its leases, the permits this process holds."""

    def __init__(
        self,
        client: object,
        who: str,
        on_unavailable: Literal["raise", "allow"],
        op_timeout: float,
        lease: float,
    ) -> None:
        ticket_lease = min(lease, max(2.0, 2 * op_timeout))
        period = min(lease / 3, ticket_lease / 4)
        super().__init__(client, who, on_unavailable, op_timeout, period, ticket_lease)
        self.lease = lease
        self._constants = f"{lease * 1e6!r} {ticket_lease * 1e6!r} {CHANNEL_PREFIX}"
        self.held: dict[str, tuple[tuple[str, ...], str]] = {}  # permit -> (keys, config)

    def config(self, limit: int) -> str:
        """The scripts' constants for a count of ``limit`` permits."""
        return f"{limit} {self._constants}"

    async def send(self, target: Any, items: list[Any], batch: str) -> None:
        kind, keys, config = target
        script = _lua.PERMIT_RELEASE if kind == "release" else _lua.PERMIT_CANCEL
        await self.run_background(script, keys, ["", config, *items])

    def give_up_after(self, target: Any) -> float:
        # past its lease a permit is free anyway, and a ticket has lapsed
        return self.lease if target[0] == "release" else self.ticket_lease

    async def renew(self) -> None:
        groups: dict[Any, tuple[list[str], list[Ticket]]] = {}
        for permit, group in self.held.items():
            groups.setdefault(group, ([], []))[0].append(permit)
        for ticket in self.tickets.values():
            groups.setdefault(ticket.target, ([], []))[1].append(ticket)
        for (keys, config), (permits, tickets) in groups.items():
            reply = await self.run_background(
                _lua.PERMIT_RENEW,
                keys,
                [
                    "",
                    config,
                    str(len(permits)),
                    *permits,
                    *(ticket.member for ticket in tickets),
                ],
            )
            if int(reply[0]):
                _log.warning(
                    "%s: %s permit(s) in use had lapsed (a pause longer than the lease, or a "
                    "restart of redis) and were asserted again",
                    self.who,
                    reply[0],
                )
            for ticket, raw in zip(tickets, reply[3:], strict=True):
                if text(raw) != "W":
                    ticket.wake()  # its turn came ('G'), or it lapsed ('L') and queues anew

    async def give_back_held(self) -> None:
        groups: dict[Any, list[str]] = {}
        for permit, (keys, config) in self.held.items():
            groups.setdefault(("release", keys, config), []).append(permit)
        for ticket in self.tickets.values():
            keys, config = ticket.target
            groups.setdefault(("cancel", keys, config), []).append(ticket.member)
        self.held.clear()
        for target, members in groups.items():
            await self.send(target, members, "")


@final
class RedisConcurrencyLimiter:
    """A count of permits in Redis: one in-flight bound shared by every process that names it.

    The same semantics as `ConcurrencyLimiter`, across processes and machines: at most
    ``max_in_flight`` permits are out at once; waiters are served first-come first-served, in
    order of arrival at Redis; a permit given back goes to the first waiter, in any process.

    Pass it to `ConcurrencyLimitLayer` (``limiter=``), like a `ConcurrencyLimiter`. Every
    object with the same ``name`` on the same server, in any process, shares the count.

    A permit is a lease: the background task renews this process's permits every ``lease / 3``
    seconds, so the permits of a process that died come back within ``lease`` seconds. A
    process paused for longer than ``lease`` (a debugger, a VM migration) can overshoot the
    bound until its next renewal: its permits are then counted again. It needs
    ``async with limiter:`` around its use, for that background work.

    - ``acquire`` takes a ticket in the shared queue when no permit is free, and waits until
      Redis says its turn came (a message on pub/sub, or the periodic renewal if a message was
      lost). A caller cancelled while waiting holds nothing.
    - ``release`` never blocks: it is queued and sent by the background task, batched.
    - Redis unreachable or slower than ``op_timeout``: as `RedisTokenBucket` (fail closed with
      `LimiterUnavailable`, or ``on_unavailable="allow"``).

    Args:
        client: A ``redis.asyncio.Redis`` (asyncio), or a coredis >= 6 client (asyncio or trio).
        name: The count's name: objects with the same name share it.
        max_in_flight: How many permits there are (>= 1).
        lease: Seconds a permit stays taken without being renewed.
        on_unavailable: ``"raise"`` (fail closed) or ``"allow"`` (fail open).
        op_timeout: Seconds one Redis operation may take; at most half the lease.

    Raises:
        ValueError: ``max_in_flight`` is below 1, ``lease`` or ``op_timeout`` is not a finite
            number above 0 or ``op_timeout`` is above half the lease, ``name`` is empty, or
            ``on_unavailable`` is neither ``"raise"`` nor ``"allow"``.
        TypeError: ``client`` is not a client towerpy can drive, or is a ``redis.asyncio``
            client on trio (the message says to use coredis).
    """

    __slots__ = ("_config", "_keys", "_last", "_max", "_name", "_shared", "_target")

    def __init__(
        self,
        client: object,
        name: str,
        max_in_flight: int,
        *,
        lease: float = 10.0,
        on_unavailable: Literal["raise", "allow"] = "raise",
        op_timeout: float = 1.0,
    ) -> None:
        name = check_name(name)
        limit = check_positive_int("max_in_flight", max_in_flight)
        lease = check_positive_number("lease", lease)
        policy = check_policy(on_unavailable)
        timeout = check_positive_number("op_timeout", op_timeout)
        if timeout > lease / 2:
            raise ValueError(
                f"op_timeout ({timeout:g}s) must be at most half the lease ({lease:g}s), or a "
                f"slow renewal lets permits in use lapse; lower op_timeout or raise lease"
            )
        self._shared = _Permits(client, f"RedisConcurrencyLimiter {name!r}", policy, timeout, lease)
        self._set(name, limit)

    def _set(self, name: str, limit: int) -> None:
        self._name = name
        self._max = limit
        self._config = self._shared.config(limit)
        self._keys = _keys(name)
        self._target = (self._keys, self._config)
        self._last = (0, 0)

    @property
    def name(self) -> str:
        """The count's name in Redis."""
        return self._name

    @property
    def max_in_flight(self) -> int:
        """How many permits there are."""
        return self._max

    @property
    def lease(self) -> float:
        """Seconds a permit stays taken without being renewed."""
        return self._shared.lease

    def for_key(self, key: Hashable, max_in_flight: int | None = None) -> RedisConcurrencyLimiter:
        """Returns the count of one key (a tenant, a tool), named ``f"{name}:{key}"``.

        It shares this object's connection and background work (enter this object, not the
        one returned), and is cheap to make: make one per request rather than keeping one per
        key.

        Args:
            key: The key.
            max_in_flight: Its own limit; defaults to this object's.

        Raises:
            ValueError: ``max_in_flight`` is below 1.
        """
        view: RedisConcurrencyLimiter = object.__new__(RedisConcurrencyLimiter)
        view._shared = self._shared
        limit = self._max if max_in_flight is None else max_in_flight
        view._set(f"{self._name}:{key}", check_positive_int("max_in_flight", limit))
        return view

    def keyed(
        self, key: Callable[[Any], Hashable], limits: Mapping[Any, int] | None = None
    ) -> RedisKeyedConcurrencyLimitLayer:
        """Returns a layer that bounds the requests in flight of each key, in every process.

        As `towerpy.KeyedConcurrencyLimitLayer`, each key counted in Redis (`for_key`): keys in
        ``limits`` have their own limit, every other key this limiter's ``max_in_flight``.

        Raises:
            TypeError: ``key`` is not a plain function, or a limit is not an int.
            ValueError: A limit is below 1.
        """
        from .keyed import RedisKeyedConcurrencyLimitLayer

        return RedisKeyedConcurrencyLimitLayer(self, key, limits or {})

    def acquire_nowait(self) -> object | None:
        """Returns None: whether a permit is free is Redis's to say (see `acquire`)."""
        return None

    async def acquire(self) -> object:
        """Waits for a permit, in order of arrival at Redis, and takes it.

        Raises:
            LimiterUnavailable: Redis did not answer in time (``on_unavailable="raise"``).
            ServiceClosed: Outside ``async with``.
        """
        permit = await self._take("n")
        assert permit is not None
        return permit

    async def try_acquire(self) -> object | None:
        """Takes a permit if one is free for it without waiting; returns it, or None.

        Raises:
            LimiterUnavailable: Redis did not answer in time (``on_unavailable="raise"``).
            ServiceClosed: Outside ``async with``.
        """
        return await self._take("t")

    async def _take(self, mode: str) -> object | None:
        shared = self._shared
        shared.check_running()
        member = shared.new_member()
        keys = self._keys
        args = ["", member, mode, self._config]
        ticket: Ticket | None = None
        try:
            reply = await shared.run(_lua.PERMIT_ACQUIRE, keys, args)
            while True:
                if reply is None:
                    return _UNCHECKED  # Redis unreachable, on_unavailable="allow"
                status = text(reply[0])
                self._last = (int(reply[1]), int(reply[2]))
                if status == "A":
                    shared.held[member] = self._target
                    return member
                if status == "R":
                    return None
                if ticket is None:
                    ticket = shared.tickets[member] = Ticket(member, self._target)
                await ticket.sleep(shared.lookout, precise=False)
                shared.check_running()
                args[2] = "p"
                reply = await shared.run(_lua.PERMIT_ACQUIRE, keys, args)
        except BaseException:
            # cancelled, or Redis failed: the ticket leaves the queue, and a permit a lost
            # reply granted is released (once closed, the close withdrew every ticket already)
            if shared.running:
                shared.enqueue(("cancel", keys, self._config), member)
            raise
        finally:
            if ticket is not None:
                del shared.tickets[member]

    def release(self, permit: object) -> None:
        """Gives a permit back; sent by the background task, which wakes the next waiter.

        Raises:
            RuntimeError: The permit is not held (released twice).
        """
        if permit is _UNCHECKED:
            return
        shared = self._shared
        group = shared.held.pop(permit, None)  # type: ignore[call-overload]
        if group is None:
            if not shared.running:
                return  # the close gave every permit back already
            raise RuntimeError(
                f"{shared.who}: release() of a permit that is not held (released twice?)"
            )
        shared.enqueue(("release", *group), permit)

    def statistics(self) -> RedisConcurrencyStatistics:
        """Returns the limit, and the permits out and waiters as of the last operation."""
        shared = self._shared
        target = self._target
        held = sum(1 for group in shared.held.values() if group == target)
        here = sum(1 for ticket in shared.tickets.values() if ticket.target == target)
        in_flight, waiting = self._last
        return RedisConcurrencyStatistics(
            self._max, in_flight, waiting, held, here, shared.unchecked
        )

    async def flush(self) -> None:
        """Waits until Redis has seen everything this process asked of the limiter so far.

        When it returns, the releases and withdrawn tickets queued before the call have been
        sent (or dropped after Redis stayed unreachable as long as they are retried, as
        logged), and every acquisition that had asked Redis has been answered (one still
        waiting waits for its turn, no longer for a reply). It covers every view of the limiter
        (`for_key`), which share one queue, and never polls. Useful before handing over to
        another process, and in tests, to look at Redis after a release that is still queued.
        """
        await self._shared.flush()

    async def __aenter__(self) -> Self:
        """Starts the background work: wake-ups, queued releases, lease renewal.

        Raises:
            RuntimeError: It is already running.
            TypeError: A ``redis.asyncio`` client on trio.
        """
        await self._shared.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Gives back this process's permits and tickets, stops the background work."""
        await self._shared.stop(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"RedisConcurrencyLimiter({self._name!r}, max_in_flight={self._max})"
