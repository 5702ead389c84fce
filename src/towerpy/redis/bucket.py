"""RedisTokenBucket: one token budget for every process on every machine, kept in Redis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self, final

from .._validate import check_cost, check_positive_number
from ..errors import RequestTooLarge
from ..limit.protocols import RateStatistics
from . import _lua
from ._client import text
from ._shared import CHANNEL_PREFIX, Shared, Ticket, check_name, check_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from types import TracebackType

    from .keyed import RedisKeyedRateLimitLayer

__all__ = ["RedisRateStatistics", "RedisTokenBucket"]

_SETTLE_RETRY = 30.0  # seconds a refund or charge is retried while Redis is unreachable
_DONE_WINDOW_US = 2 * _SETTLE_RETRY * 1e6  # a retried batch must still be found applied


@dataclass(frozen=True, slots=True)
class RedisRateStatistics(RateStatistics):
    """What a Redis token bucket is doing, as its last answer from Redis said.

    ``tokens`` and ``waiting`` are the shared bucket's, every process included, as of this
    object's last operation (a full bucket before the first).

    Attributes:
        waiting_here: Requests of this object waiting now.
        unchecked: Requests admitted without the limit because Redis could not be reached
            (``on_unavailable="allow"``), since the limiter was made.
    """

    waiting_here: int
    unchecked: int


def _keys(name: str) -> tuple[str, str, str, str, str]:
    # one hash tag: a Redis Cluster keeps them in one slot, so one script may use them all
    tag = "{towerpy:bucket:" + name + "}"
    return tag + ":b", tag + ":q", tag + ":l", tag + ":a", tag + ":d"


@final
class _Bucket(Shared):
    """The shared part of a bucket: its rate, and how queued refunds, charges, cancels go."""

    def __init__(
        self,
        client: object,
        who: str,
        on_unavailable: Literal["raise", "allow"],
        op_timeout: float,
        interval: float,
        burst: float,
    ) -> None:
        ticket_lease = max(2.0, 2 * op_timeout)
        super().__init__(client, who, on_unavailable, op_timeout, ticket_lease / 4, ticket_lease)
        self.size = burst
        # an admission is remembered this long, so that a caller cancelled while its reply
        # was on the way can give the tokens back (its cancel is sent within op_timeout)
        recent = (2 * op_timeout + 5.0) * 1e6
        self.config = " ".join(
            [
                repr(interval * 1e6),  # µs per token
                repr(burst),
                repr(ticket_lease * 1e6),
                repr(recent),
                repr(_DONE_WINDOW_US),
                CHANNEL_PREFIX,
            ]
        )

    async def send(self, target: Any, items: list[Any], batch: str) -> None:
        kind, keys = target
        if kind == "settle":
            await self.run_background(
                _lua.BUCKET_SETTLE,
                keys,
                ["", batch, self.config, *(repr(delta) for delta in items)],
            )
        else:  # tickets whose callers left
            await self.run_background(_lua.BUCKET_CANCEL, keys[:4], ["", self.config, *items])

    def give_up_after(self, target: Any) -> float:
        return _SETTLE_RETRY if target[0] == "settle" else self.ticket_lease

    async def renew(self) -> None:
        groups: dict[Any, list[Ticket]] = {}
        for ticket in self.tickets.values():
            groups.setdefault(ticket.target, []).append(ticket)
        for keys, tickets in groups.items():
            reply = await self.run_background(
                _lua.BUCKET_RENEW,
                keys[:4],
                ["", self.config, *(ticket.member for ticket in tickets)],
            )
            for ticket, raw in zip(tickets, reply[2:], strict=True):
                status = text(raw)
                if status == "L":
                    ticket.wake()  # lapsed (this process was paused): it queues anew
                elif status != "W" and not ticket.precise:
                    ticket.wake(float(status) / 1e6)  # the head, and no message said so

    async def give_back_held(self) -> None:
        groups: dict[Any, list[str]] = {}
        for ticket in self.tickets.values():
            groups.setdefault(("cancel", ticket.target), []).append(ticket.member)
        for target, members in groups.items():
            await self.send(target, members, "")


@final
class RedisTokenBucket:
    """A token bucket in Redis: one budget shared by every process that names it.

    The same semantics as `TokenBucket`, across processes and machines: it refills at
    ``rate`` tokens per ``per`` seconds and holds at most ``burst``; in any window of ``t``
    seconds the tokens taken are at most ``burst + rate * t / per``; waiters are admitted
    first-come first-served (in order of arrival at Redis), each as soon as its tokens are
    there; refunds and charges (``actual_cost``) take effect at once and wake the first waiter.
    Every operation is one Lua script on Redis's clock: no client clock crosses machines.

    Pass it to `RateLimitLayer` (``limiter=``), like a `TokenBucket`. Every object with the same
    ``name`` on the same server, in any process, shares the budget: make one per process.

    It needs ``async with bucket:`` around its use: that block runs the background work
    (wake-ups, sending refunds and charges, renewing waiters' places in the queue).

    - ``acquire`` takes a ticket in the shared queue when it cannot be admitted at once, and
      sleeps until its tokens are due or Redis says its turn came. A caller cancelled while
      waiting takes nothing (its ticket leaves the queue); a waiter whose process died loses
      its place after 2 seconds (``2 * op_timeout`` if longer).
    - ``refund`` and ``charge`` never block: they are queued and sent by the background task,
      batched, and retried for 30 s while Redis is unreachable.
    - Redis unreachable or slower than ``op_timeout``: ``acquire`` raises `LimiterUnavailable`
      (fail closed), or with ``on_unavailable="allow"`` admits the request unchecked, counts
      it in `statistics` and logs the outage once. It never falls back to a per-process limit.

    Args:
        client: A ``redis.asyncio.Redis`` (asyncio), or a coredis >= 6 client (asyncio or trio).
        name: The budget's name: objects with the same name share it.
        rate: Tokens added per ``per`` seconds (> 0).
        per: The period of ``rate``, in seconds.
        burst: The most tokens the bucket holds; defaults to ``rate``.
        on_unavailable: ``"raise"`` (fail closed) or ``"allow"`` (fail open).
        op_timeout: Seconds one Redis operation may take before Redis counts as unreachable.

    Raises:
        ValueError: A number is not finite and above 0, ``name`` is empty, or
            ``on_unavailable`` is neither ``"raise"`` nor ``"allow"``.
        TypeError: ``client`` is not a client towerpy can drive, or is a ``redis.asyncio``
            client on trio (the message says to use coredis).

    Example:
        >>> tpm = RedisTokenBucket(redis.asyncio.Redis(), "openai-tpm", 40_000, per=60)
        >>> model = RateLimitLayer(limiter=tpm, cost=estimate).layer(step)
        >>> async with tpm:
        ...     await model(request)
    """

    __slots__ = ("_keys", "_last", "_name", "_per", "_rate", "_shared")

    def __init__(
        self,
        client: object,
        name: str,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        on_unavailable: Literal["raise", "allow"] = "raise",
        op_timeout: float = 1.0,
    ) -> None:
        name = check_name(name)
        rate = check_positive_number("rate", rate)
        per = check_positive_number("per", per)
        size = rate if burst is None else check_positive_number("burst", burst)
        policy = check_policy(on_unavailable)
        timeout = check_positive_number("op_timeout", op_timeout)
        who = f"RedisTokenBucket {name!r}"
        self._shared = _Bucket(client, who, policy, timeout, per / rate, size)
        self._rate = rate
        self._per = per
        self._name = name
        self._keys = _keys(name)
        self._last: tuple[float, int] = (size, 0)

    @property
    def name(self) -> str:
        """The budget's name in Redis."""
        return self._name

    @property
    def rate(self) -> float:
        """Tokens added per ``per`` seconds."""
        return self._rate

    @property
    def per(self) -> float:
        """The period of `rate`, in seconds."""
        return self._per

    @property
    def burst(self) -> float:
        """The most tokens the bucket holds: the largest cost a request may have."""
        return self._shared.size

    def for_key(self, key: Hashable) -> RedisTokenBucket:
        """Returns the bucket of one key (a tenant, an API key): same rate, budget of its own.

        The bucket is named ``f"{name}:{key}"``. It shares this object's connection and
        background work (enter this object, not the one returned), and is cheap to make: make
        one per request rather than keeping one per key.
        """
        view: RedisTokenBucket = object.__new__(RedisTokenBucket)
        view._shared = self._shared
        view._rate = self._rate
        view._per = self._per
        view._name = f"{self._name}:{key}"
        view._keys = _keys(view._name)
        view._last = (self.burst, 0)
        return view

    def keyed(
        self,
        key: Callable[[Any], Hashable],
        *,
        cost: Callable[[Any], float] | None = None,
        actual_cost: Callable[[Any, Any], float] | None = None,
    ) -> RedisKeyedRateLimitLayer:
        """Returns a layer that rate-limits each key of the requests on a bucket of its own.

        ``key(request)`` names the budget a request spends (its tenant, its API key); each key
        gets a bucket with this one's rate and burst (`for_key`), shared by every process.
        ``cost`` and ``actual_cost`` are as in `RateLimitLayer`.

        Raises:
            TypeError: ``key``, ``cost`` or ``actual_cost`` is not a plain function.
        """
        from .keyed import RedisKeyedRateLimitLayer

        return RedisKeyedRateLimitLayer(self, key, cost, actual_cost)

    def acquire_nowait(self, cost: float) -> bool:
        """Returns False: whether the tokens are there is Redis's to say (see `acquire`)."""
        return False

    async def acquire(self, cost: float) -> None:
        """Waits, in order of arrival at Redis, until ``cost`` tokens are there; takes them.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`: it could never be admitted.
            LimiterUnavailable: Redis did not answer in time (``on_unavailable="raise"``).
            ServiceClosed: Outside ``async with``.
        """
        self._check_fits(cost)
        await self._take(float(cost), "n")

    async def try_acquire(self, cost: float) -> bool:
        """Takes ``cost`` tokens if they are there and nobody waits; tells whether it did.

        Raises:
            RequestTooLarge: ``cost`` is above `burst`.
            LimiterUnavailable: Redis did not answer in time (``on_unavailable="raise"``).
            ServiceClosed: Outside ``async with``.
        """
        self._check_fits(cost)
        reply = await self._take(float(cost), "t")
        return reply is None or text(reply[0]) == "A"

    async def _take(self, cost: float, mode: str) -> list[Any] | None:
        """Takes ``cost`` tokens; returns the reply that admitted (or refused) the request.

        None when Redis was unreachable and the policy admitted it unchecked. The reply says
        when Redis admitted it (``reply[2]``, µs) and its place in arrival order
        (``reply[1]``): the multi-process tests check the window bound and FIFO on them.
        """
        shared = self._shared
        shared.check_running()
        member = f"{shared.new_member()}|{cost!r}"
        keys = self._keys[:4]
        args = ["", member, mode, shared.config]
        ticket: Ticket | None = None
        try:
            reply = await shared.run(_lua.BUCKET_ACQUIRE, keys, args)
            while True:
                if reply is None:
                    return None  # Redis unreachable, on_unavailable="allow": unchecked
                self._last = (float(reply[4]), int(reply[5]))
                if text(reply[0]) != "Q":
                    return reply  # admitted, or (a try) refused
                if ticket is None:
                    ticket = shared.tickets[member] = Ticket(member, self._keys)
                wait = text(reply[3])
                if wait:  # the head: its tokens are due then, unless a refund comes first
                    await ticket.sleep(float(wait) / 1e6, precise=True)
                else:  # behind others: woken when it becomes the head
                    await ticket.sleep(shared.lookout, precise=False)
                if ticket.admitted is not None:  # Redis admitted it on its behalf
                    self._last = (float(ticket.admitted[4]), 0)
                    return ticket.admitted
                shared.check_running()
                args[2] = "p"
                reply = await shared.run(_lua.BUCKET_ACQUIRE, keys, args)
        except BaseException:
            # cancelled, or Redis failed: the ticket leaves the queue, and tokens a lost reply
            # admitted come back (once closed, the close withdrew every ticket already)
            if shared.running:
                shared.enqueue(("cancel", self._keys), member)
            raise
        finally:
            if ticket is not None:
                del shared.tickets[member]

    def _check_fits(self, cost: float) -> None:
        check_cost("cost", cost)
        if cost > self.burst:
            raise RequestTooLarge(
                f"a request costing {cost:g} tokens can never pass a bucket that holds at most "
                f"{self.burst:g} (burst); raise burst or split the request"
            )

    def refund(self, cost: float) -> None:
        """Gives ``cost`` tokens back (never above `burst`); sent by the background task."""
        check_cost("cost", cost)
        if cost:
            self._shared.enqueue(("settle", self._keys), -float(cost))

    def charge(self, cost: float) -> None:
        """Takes ``cost`` more tokens, going into debt if need be; sent by the background task."""
        check_cost("cost", cost)
        if cost:
            self._shared.enqueue(("settle", self._keys), float(cost))

    def statistics(self) -> RedisRateStatistics:
        """Returns the rate, and the tokens and waiters as of this object's last operation."""
        shared = self._shared
        here = sum(1 for ticket in shared.tickets.values() if ticket.target == self._keys)
        tokens, waiting = self._last
        return RedisRateStatistics(
            self._rate, self._per, self.burst, tokens, waiting, here, shared.unchecked
        )

    async def flush(self) -> None:
        """Waits until Redis has seen everything this process asked of the limiter so far.

        When it returns, the refunds, charges and withdrawn tickets queued before the call
        have been sent (or dropped after Redis stayed unreachable as long as they are retried,
        as logged), and every acquisition that had asked Redis has been answered (one still
        waiting waits for its turn, no longer for a reply). It covers every view of the bucket
        (`for_key`), which share one queue, and never polls. Useful before handing over to
        another process, and in tests, to look at Redis after a refund that is still queued.
        """
        await self._shared.flush()

    async def __aenter__(self) -> Self:
        """Starts the background work: wake-ups, queued refunds and charges, renewals.

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
        """Sends what is queued, withdraws this process's tickets, stops the background work."""
        await self._shared.stop(exc_type, exc, tb)

    def __repr__(self) -> str:
        return (
            f"RedisTokenBucket({self._name!r}, rate={self._rate:g}, per={self._per:g}, "
            f"burst={self.burst:g})"
        )
