"""The Lua scripts as functions of time: each call is given its ``now``, so results are exact.

These drive the scripts on the real server along timelines of the test's choosing (an hour
costs nothing, and no sleeping happens); the limiter objects built on them are tested in the
other modules.
"""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from towerpy.redis import _lua
from towerpy.redis._client import Connection, connect, text
from towerpy.redis._shared import CHANNEL_PREFIX
from towerpy.redis.bucket import _keys as bucket_keys
from towerpy.redis.concurrency import _keys as permit_keys

from .support import eventually, open_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]

T0 = 1_800_000_000_000_000.0  # µs: a server clock of 2027, so precision is tested where it matters
SECOND = 1_000_000.0
LONG = 1e12  # a ticket lease that never lapses in these timelines


def unique() -> str:
    return f"towerpy-test-{uuid.uuid4().hex[:12]}"


async def keys_without_ttl(client: Any, name: str) -> list[str]:
    return [
        text(key)
        async for key in client.scan_iter(match=f"*{name}*")
        if await client.pttl(key) == -1
    ]


class Bucket:
    """Calls the bucket scripts with explicit times."""

    def __init__(
        self, conn: Connection, rate: float, burst: float, *, tl: float = LONG, per: float = 1.0
    ) -> None:
        self.conn = conn
        self.name = unique()
        self.keys = bucket_keys(self.name)
        self.T = per / rate * SECOND
        self.B = burst
        recent, done = 10 * SECOND, 60 * SECOND
        self.config = f"{self.T!r} {burst!r} {tl!r} {recent!r} {done!r} {CHANNEL_PREFIX}"

    async def _run(self, script: str, keys: Any, *args: str) -> list[str]:
        return [text(item) for item in await self.conn.run(script, keys, args)]

    async def acquire(self, now: float, ticket: str, mode: str = "n") -> list[str]:
        return await self._run(
            _lua.BUCKET_ACQUIRE, self.keys[:4], repr(now), ticket, mode, self.config
        )

    async def settle(self, now: float, batch: str, *deltas: float) -> list[str]:
        keys = self.keys
        return await self._run(
            _lua.BUCKET_SETTLE,
            keys,
            repr(now),
            batch,
            self.config,
            *map(repr, deltas),
        )

    async def cancel(self, now: float, *tickets: str) -> list[str]:
        return await self._run(_lua.BUCKET_CANCEL, self.keys[:4], repr(now), self.config, *tickets)

    async def renew(self, now: float, *tickets: str) -> list[str]:
        return await self._run(_lua.BUCKET_RENEW, self.keys[:4], repr(now), self.config, *tickets)

    async def level(self, now: float) -> float:
        reply = await self.acquire(now, f"probe|{uuid.uuid4().hex}|0.0", "t")
        return float(reply[4])


class Permits:
    """Calls the concurrency scripts with explicit times."""

    def __init__(self, conn: Connection, limit: int, *, lease: float, tl: float = LONG) -> None:
        self.conn = conn
        self.name = unique()
        self.keys = permit_keys(self.name)
        self.config = f"{limit} {lease!r} {tl!r} {CHANNEL_PREFIX}"

    async def acquire(self, now: float, permit: str, mode: str = "n") -> tuple[str, int, int]:
        reply = await self.conn.run(
            _lua.PERMIT_ACQUIRE, self.keys, [repr(now), permit, mode, self.config]
        )
        return text(reply[0]), int(reply[1]), int(reply[2])

    async def _many(self, script: str, now: float, *extra: str) -> list[str]:
        reply = await self.conn.run(script, self.keys, [repr(now), self.config, *extra])
        return [text(item) for item in reply]

    async def release(self, now: float, *permits: str) -> list[str]:
        return await self._many(_lua.PERMIT_RELEASE, now, *permits)

    async def cancel(self, now: float, *permits: str) -> list[str]:
        return await self._many(_lua.PERMIT_CANCEL, now, *permits)

    async def renew(self, now: float, permits: list[str], tickets: list[str]) -> list[str]:
        return await self._many(_lua.PERMIT_RENEW, now, str(len(permits)), *permits, *tickets)


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[Connection]:
    async with open_client(redis_url) as client:
        yield connect(client, "the test")


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Any]:
    async with open_client(redis_url) as client:
        yield client


class Messages:
    """What the scripts publish to one owner's wake-up channel."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.subscribed = anyio.Event()

    def ready(self) -> None:
        self.subscribed.set()


@pytest.fixture
async def messages(conn: Connection) -> AsyncIterator[tuple[str, Messages]]:
    owner = uuid.uuid4().hex[:16]
    inbox = Messages()
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.listen, CHANNEL_PREFIX + owner, inbox.ready, inbox.received.append)
        await inbox.subscribed.wait()
        yield owner, inbox
        tg.cancel_scope.cancel()


async def received(inbox: Messages, count: int) -> list[str]:
    await eventually(lambda: len(inbox.received) >= count, within=2)
    return inbox.received


# --- token bucket ---------------------------------------------------------------------------


async def test_a_bucket_starts_full_and_admits_a_waiter_the_microsecond_its_tokens_are_there(
    conn: Connection, raw: Any
) -> None:
    bucket = Bucket(conn, rate=2, burst=5)  # a token every 0.5 s
    for i in range(5):
        assert (await bucket.acquire(T0, f"a|{i}|1.0"))[0] == "A"
    status, _, _, wait, level, queued = await bucket.acquire(T0, "a|5|1.0")
    assert (status, float(wait), float(level), int(queued)) == ("Q", 0.5 * SECOND, 0.0, 1)
    status, _, _, wait, _, _ = await bucket.acquire(T0 + 0.5 * SECOND - 1, "a|5|1.0", "p")
    assert (status, float(wait)) == ("Q", 1.0)
    status, _, stamp, _, level, queued = await bucket.acquire(T0 + 0.5 * SECOND, "a|5|1.0", "p")
    assert (status, float(stamp), float(level), int(queued)) == ("A", T0 + 0.5 * SECOND, 0, 0)
    assert await keys_without_ttl(raw, bucket.name) == []


async def test_a_costly_waiter_is_not_overtaken_by_cheaper_later_arrivals(conn: Connection) -> None:
    bucket = Bucket(conn, rate=1, burst=4)
    assert (await bucket.acquire(T0, "a|0|4.0"))[0] == "A"
    assert (await bucket.acquire(T0 + SECOND, "a|1|3.0"))[0] == "Q"  # needs 3, has 1
    # 1 token is there, but a waiter arrived first: the newcomer queues behind it
    status, _, _, wait, _, queued = await bucket.acquire(T0 + SECOND, "a|2|1.0")
    assert (status, wait, int(queued)) == ("Q", "", 2)
    assert (await bucket.acquire(T0 + 3 * SECOND, "a|1|3.0", "p"))[0] == "A"
    status, _, _, wait, _, _ = await bucket.acquire(T0 + 3 * SECOND, "a|2|1.0", "p")
    assert (status, float(wait)) == ("Q", SECOND)  # its token comes 1 s after the 3 taken


@settings(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rate=st.sampled_from([0.5, 3.0, 200.0, 1000 / 60]),
    burst=st.integers(1, 8),
    arrivals=st.lists(st.tuples(st.floats(0, 1.5), st.floats(0, 1)), min_size=1, max_size=25),
)
async def test_any_timeline_keeps_the_window_bound_and_admits_in_arrival_order_when_due(
    conn: Connection, rate: float, burst: int, arrivals: list[tuple[float, float]]
) -> None:
    bucket = Bucket(conn, rate=rate, burst=burst)
    pending = []
    at = T0
    for gap, share in arrivals:
        at += math.ceil(gap * SECOND)
        pending.append((at, round(share * burst, 3)))  # any cost up to the burst
    admitted: list[tuple[float, int, float]] = []  # (Redis time, arrival order, cost)
    waiting: dict[str, int] = {}  # queued tickets and their arrival order

    def cost_of(ticket: str) -> float:
        return float(ticket.rsplit("|", 1)[1])

    async def note(now: float, ticket: str, reply: list[str]) -> None:
        if reply[0] == "A":
            admitted.append((float(reply[2]), int(reply[1]), cost_of(ticket)))
            waiting.pop(ticket, None)
        elif reply[0] == "Q":
            waiting[ticket] = int(reply[1])
        # the heads a call admitted on their processes' behalf, at this call's time
        everyone = "return redis.call('ZRANGE', KEYS[1], 0, -1)"
        queue = {text(t) for t in await conn.run(everyone, [bucket.keys[1]], [])}
        served = [t for t in waiting if t not in queue]
        admitted.extend((now, waiting.pop(t), cost_of(t)) for t in served)

    now, number, due = T0, 0, None
    while True:
        # the head looks again now: admitted if its tokens are there, else told when they are
        while first := await conn.run(
            "return redis.call('ZRANGE', KEYS[1], 0, 0)", [bucket.keys[1]], []
        ):
            head = text(first[0])
            reply = await bucket.acquire(now, head, "p")
            await note(now, head, reply)
            if reply[0] == "Q":
                if due is not None and now >= due:  # it was due: a float rounding at most
                    assert float(reply[3]) <= 1.0
                due = now + float(reply[3])
                break
            due = None
        else:
            due = None
        if due is not None and (not pending or due <= pending[0][0]):
            now = math.ceil(due)
            continue
        if not pending:
            break
        now, cost = pending.pop(0)
        ticket = f"sim|{number}|{cost!r}"
        number += 1
        await note(now, ticket, await bucket.acquire(now, ticket))
    admitted.sort()
    assert len(admitted) == len(arrivals)
    assert [order for _, order, _ in admitted] == sorted(order for _, order, _ in admitted)
    per_token = bucket.T
    for i in range(len(admitted)):
        taken = 0.0
        for j in range(i, len(admitted)):
            taken += admitted[j][2]
            # times are doubles of µs since 1970 (a quarter-µs grain at this magnitude): an
            # admission may come a rounding before its exact time; exact to the µs
            window = admitted[j][0] - admitted[i][0] + 1
            assert taken <= burst + window / per_token + 1e-9 * burst


async def test_a_charge_delays_the_head_and_a_refund_admits_it_on_its_behalf_at_once(
    conn: Connection, messages: tuple[str, Messages]
) -> None:
    owner, inbox = messages
    bucket = Bucket(conn, rate=1, burst=10)
    assert (await bucket.acquire(T0, "a|0|10.0"))[0] == "A"
    x = f"{owner}|1|4.0"
    assert float((await bucket.acquire(T0, x))[3]) == 4 * SECOND
    # at 1 s one token is back; a charge of 3 (a call used more than estimated): level -2
    status, level, _ = await bucket.settle(T0 + SECOND, "b1", 3.0)
    assert (status, float(level)) == ("S", -2.0)
    assert float((await bucket.acquire(T0 + SECOND, x, "p"))[3]) == 6 * SECOND
    # at 2 s level -1; a refund of 5 brings it to 4: the head is admitted there and then, on
    # its process's behalf, which is told so (its arrival order, the time, the level left)
    status, level, queued = await bucket.settle(T0 + 2 * SECOND, "b2", -5.0)
    assert (status, float(level), queued) == ("S", 0.0, "0")
    assert await received(inbox, 1) == [f"A 2 {T0 + 2 * SECOND:.17g} 0 {x}"]
    # a poll whose process missed the message hears it again, with the time it was admitted
    reply = await bucket.acquire(T0 + 3 * SECOND, x, "p")
    assert (reply[0], float(reply[2])) == ("A", T0 + 2 * SECOND)


async def test_refunds_never_fill_a_bucket_above_burst_while_debts_may_exceed_it(
    conn: Connection,
) -> None:
    bucket = Bucket(conn, rate=1, burst=10)
    assert float((await bucket.settle(T0, "r", -5.0))[1]) == 10.0
    assert float((await bucket.settle(T0, "c", 12.0))[1]) == -2.0
    # applied in order within one batch: a refund on a full bucket is lost, the charge is not
    assert float((await bucket.settle(T0 + 12 * SECOND, "rc", -5.0, 3.0))[1]) == 7.0


async def test_a_settlement_retried_under_the_same_batch_id_applies_once(conn: Connection) -> None:
    bucket = Bucket(conn, rate=1, burst=10)
    assert (await bucket.settle(T0, "once", 4.0))[:2] == ["S", "6"]
    assert (await bucket.settle(T0, "once", 4.0))[:2] == ["D", "6"]


async def test_a_caller_that_left_after_being_admitted_gets_its_tokens_back(
    conn: Connection,
) -> None:
    bucket = Bucket(conn, rate=1, burst=10)
    assert (await bucket.acquire(T0, "a|0|3.0"))[4] == "7"
    assert await bucket.cancel(T0 + 1, "a|0|3.0") == ["10", "0", "F"]
    assert await bucket.cancel(T0 + 2, "a|0|3.0") == ["10", "0", "N"]  # only once


async def test_a_cancelled_ticket_leaves_the_queue_and_the_next_head_is_told(
    conn: Connection, messages: tuple[str, Messages]
) -> None:
    owner, inbox = messages
    bucket = Bucket(conn, rate=1, burst=2)
    assert (await bucket.acquire(T0, "a|0|2.0"))[0] == "A"
    assert (await bucket.acquire(T0, "a|1|2.0"))[0] == "Q"
    assert (await bucket.acquire(T0, f"{owner}|2|1.0"))[0] == "Q"
    assert await bucket.cancel(T0 + SECOND // 2, "a|1|2.0") == ["0.5", "1", "C"]
    assert await received(inbox, 1) == [f"500000 {owner}|2|1.0"]  # its token is 0.5 s away


async def test_a_ticket_whose_process_stopped_renewing_lapses_and_the_next_head_goes(
    conn: Connection, messages: tuple[str, Messages]
) -> None:
    owner, inbox = messages
    bucket = Bucket(conn, rate=1, burst=1, tl=SECOND)
    assert (await bucket.acquire(T0, "a|0|1.0"))[0] == "A"
    assert (await bucket.acquire(T0, "dead|1|1.0"))[0] == "Q"
    mine = f"{owner}|2|1.0"
    assert (await bucket.acquire(T0, mine))[0] == "Q"
    assert (await bucket.renew(T0 + 0.9 * SECOND, mine))[2:] == ["W"]  # still behind
    # at 1.5 s the dead process's ticket has lapsed: this one is the head, its token is there,
    # and the renewal that found it so admits it
    assert (await bucket.renew(T0 + 1.5 * SECOND, mine))[2:] == ["L"]  # not waiting any more
    assert await received(inbox, 1) == [f"A 3 {T0 + 1.5 * SECOND:.17g} 0 {mine}"]
    assert (await bucket.acquire(T0 + 1.6 * SECOND, mine, "p"))[0] == "A"


async def test_a_ticket_polled_after_it_lapsed_queues_anew_at_the_back(conn: Connection) -> None:
    bucket = Bucket(conn, rate=1, burst=1, tl=SECOND)
    assert (await bucket.acquire(T0, "a|0|1.0"))[0] == "A"
    assert (await bucket.acquire(T0, "paused|1|1.0"))[1] == "2"
    assert (await bucket.acquire(T0 + 0.5 * SECOND, "b|2|1.0"))[1] == "3"
    reply = await bucket.acquire(T0 + 1.2 * SECOND, "paused|1|1.0", "p")
    # b, the head once the lapsed ticket was purged, got the token (there since 1 s); the
    # paused one queues anew, behind it: alone now, waiting a second for the next token
    assert (reply[0], reply[1], float(reply[3]), reply[5]) == ("Q", "4", SECOND, "1")


async def test_a_server_clock_jump_never_admits_more_than_its_own_clock_allows(
    conn: Connection,
) -> None:
    bucket = Bucket(conn, rate=1, burst=5)
    assert (await bucket.acquire(T0, "a|0|5.0"))[0] == "A"
    # the clock steps back 10 s: the bucket looks emptier (more waiting), never fuller
    reply = await bucket.acquire(T0 - 10 * SECOND, "a|1|1.0")
    assert (reply[0], float(reply[3])) == ("Q", 11 * SECOND)
    # a step forward of an hour: full again, and no more than full
    assert await bucket.level(T0 + 3600 * SECOND) == 5.0


async def test_every_bucket_key_expires_once_the_bucket_would_be_full_again(
    conn: Connection, raw: Any
) -> None:
    bucket = Bucket(conn, rate=1, burst=10, tl=3 * SECOND)
    assert (await bucket.acquire(T0, "a|0|4.0"))[0] == "A"
    # full again 4 s after T0 (and 1 s of slack); the admission log lives its window
    assert 4900 < await raw.pttl(bucket.keys[0]) <= 5000
    assert 10900 < await raw.pttl(bucket.keys[3]) <= 11000
    assert (await bucket.acquire(T0, "a|1|10.0"))[0] == "Q"
    assert 3900 < await raw.pttl(bucket.keys[1]) <= 4000  # queue: ticket lease + 1 s
    assert (await bucket.settle(T0, "s", 1.0))[0] == "S"
    assert await keys_without_ttl(raw, bucket.name) == []


# --- concurrency ------------------------------------------------------------------------------


async def test_permits_go_to_the_first_callers_then_to_waiters_in_arrival_order(
    conn: Connection, messages: tuple[str, Messages], raw: Any
) -> None:
    owner, inbox = messages
    permits = Permits(conn, 2, lease=10 * SECOND)
    assert await permits.acquire(T0, "a|1") == ("A", 1, 0)
    assert await permits.acquire(T0, "a|2") == ("A", 2, 0)
    assert await permits.acquire(T0, f"{owner}|3") == ("Q", 2, 1)
    assert await permits.acquire(T0, f"{owner}|4") == ("Q", 2, 2)
    assert await permits.acquire(T0, f"{owner}|4", "p") == ("Q", 2, 2)  # not its turn
    assert await permits.release(T0 + 1, "a|1") == ["1", "2"]
    assert await received(inbox, 1) == [f"0 {owner}|3"]  # only the first may go
    assert await permits.acquire(T0 + 2, f"{owner}|4", "p") == ("Q", 1, 2)
    assert await permits.acquire(T0 + 2, f"{owner}|3", "p") == ("A", 2, 1)
    assert await permits.acquire(T0 + 3, f"{owner}|3", "p") == ("A", 2, 1)  # a retry: no 2nd
    assert await keys_without_ttl(raw, permits.name) == []


async def test_a_newcomer_goes_first_only_when_a_permit_is_free_for_every_waiter_too(
    conn: Connection,
) -> None:
    permits = Permits(conn, 3, lease=10 * SECOND)
    for i in range(3):
        assert (await permits.acquire(T0, f"a|{i}"))[0] == "A"
    assert (await permits.acquire(T0, "w|1"))[0] == "Q"
    assert (await permits.acquire(T0, "w|2"))[0] == "Q"
    await permits.release(T0 + 1, "a|0", "a|1")  # 2 free: both for the waiters
    assert await permits.acquire(T0 + 2, "new|1", "t") == ("R", 1, 2)
    await permits.release(T0 + 3, "a|2")  # 3 free, 2 waiters: one for the newcomer
    assert await permits.acquire(T0 + 4, "new|1", "t") == ("A", 1, 2)


async def test_a_permit_whose_holder_stopped_renewing_lapses_and_is_reasserted_if_it_was_alive(
    conn: Connection, messages: tuple[str, Messages]
) -> None:
    owner, inbox = messages
    permits = Permits(conn, 1, lease=SECOND)
    assert (await permits.acquire(T0, "paused|1"))[0] == "A"
    assert (await permits.acquire(T0, f"{owner}|2"))[0] == "Q"
    # at 1.5 s the holder's lease has passed: the waiter's renewal finds its turn came
    assert await permits.renew(T0 + 1.5 * SECOND, [], [f"{owner}|2"]) == ["0", "0", "1", "G"]
    assert await received(inbox, 1) == [f"0 {owner}|2"]
    assert (await permits.acquire(T0 + 1.5 * SECOND, f"{owner}|2", "p"))[0] == "A"
    # the paused holder wakes and renews: its permit is still in use, so it counts again
    assert await permits.renew(T0 + 1.6 * SECOND, ["paused|1"], []) == ["1", "2", "0"]


async def test_a_caller_that_left_holds_nothing_whether_queued_or_just_granted(
    conn: Connection,
) -> None:
    permits = Permits(conn, 1, lease=10 * SECOND)
    assert (await permits.acquire(T0, "a|1"))[0] == "A"
    assert (await permits.acquire(T0, "a|2"))[0] == "Q"
    assert await permits.cancel(T0 + 1, "a|2", "a|1", "a|3") == ["0", "0", "C", "F", "N"]


async def test_every_permit_key_expires_after_the_longest_lease(conn: Connection, raw: Any) -> None:
    permits = Permits(conn, 1, lease=10 * SECOND, tl=2 * SECOND)
    assert (await permits.acquire(T0, "a|1"))[0] == "A"
    assert (await permits.acquire(T0, "a|2"))[0] == "Q"
    assert 10900 < await raw.pttl(permits.keys[0]) <= 11000
    assert 2900 < await raw.pttl(permits.keys[1]) <= 3000
    assert 10900 < await raw.pttl(permits.keys[3]) <= 11000
    assert await keys_without_ttl(raw, permits.name) == []
