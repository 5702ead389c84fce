from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import anyio
import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import (
    Buffer,
    BufferLayer,
    ConcurrencyLimit,
    ConcurrencyLimiter,
    ConcurrencyLimitLayer,
    RateLimit,
    RateLimitLayer,
    Service,
    ServiceBuilder,
    TokenBucket,
    context_priority,
    priority_scope,
    service_fn,
)
from towerpy._priority import PriorityLine, check_aging, priority_of
from towerpy._waiter import Permits
from towerpy.redis import RedisConcurrencyLimiter, RedisTokenBucket
from towerpy.testing import wait_all_tasks_blocked
from towerpy.tools import ParallelToolRouter, ToolRouter

pytestmark = pytest.mark.anyio


# --- the line ------------------------------------------------------------------------------------


def test_the_line_serves_the_lowest_rank_first_and_equal_ranks_in_arrival_order() -> None:
    line: PriorityLine[str] = PriorityLine(None)
    for name, priority in [("a", 0), ("b", 2), ("c", 1), ("d", 2), ("e", 0)]:
        line[name] = line.rank(priority)
    assert list(line) == ["b", "d", "c", "a", "e"]
    assert line.first() == "b"
    assert [line.popitem(last=False)[0] for _ in range(5)] == ["b", "d", "c", "a", "e"]
    assert not line


def test_leaving_the_line_is_undone_everywhere_and_the_heap_stays_small() -> None:
    line: PriorityLine[int] = PriorityLine(None)
    for i in range(1000):
        line[i] = -i % 7
    for i in range(0, 1000, 2):
        assert line.pop(i) == -i % 7
    del line[1]
    assert line.pop(1, "gone") == "gone"
    assert len(line) == 499
    assert 3 not in line or line.pop(3) is not None
    assert len(line._heap) <= 2 * len(line) + 8 + 1
    order = [line.popitem()[0] for _ in range(len(line))]
    assert order == sorted(order, key=lambda i: (-i % 7, i))
    with pytest.raises(KeyError):
        line.popitem()
    with pytest.raises(IndexError):
        line.first()
    with pytest.raises(ValueError, match="first waiter only"):
        line.popitem(last=True)


def test_putting_a_waiter_in_line_again_moves_it() -> None:
    line: PriorityLine[str] = PriorityLine(None)
    line["a"] = 0
    line["b"] = 1
    line["a"] = 2
    assert list(line) == ["b", "a"]
    assert len(line) == 2
    line.clear()
    assert len(line) == 0
    assert repr(line) == "PriorityLine(aging=None, waiting=0)"


@given(
    st.lists(
        st.tuples(
            st.integers(-3, 3),  # priority
            st.sampled_from([Fraction(0), Fraction(1, 4), Fraction(1, 2), Fraction(3)]),  # gap
            st.booleans(),  # leaves the line before the end
        ),
        max_size=40,
    ),
    st.sampled_from([None, 0.5, 1.0, 4.0]),
)
@settings(deadline=None)
def test_the_line_serves_exactly_the_reference_sort_by_rank_then_arrival(
    waiters: list[tuple[int, Fraction, bool]], aging: float | None
) -> None:
    line: PriorityLine[int] = PriorityLine(aging)
    now = Fraction(0)
    expected = []
    for seq, (priority, gap, leaves) in enumerate(waiters):
        now += gap
        # the rank the line makes: now - priority * aging (exact here: dyadic fractions)
        rank = -priority if aging is None else float(now) - priority * aging
        line[seq] = rank
        if not leaves:
            expected.append((Fraction(rank), seq))
    for seq, (_, _, leaves) in enumerate(waiters):
        if leaves:
            line.pop(seq)
    assert [line.popitem()[0] for _ in range(len(line))] == [seq for _, seq in sorted(expected)]


async def test_permits_in_a_priority_line_hand_each_permit_to_the_first_by_rank() -> None:
    permits = Permits(0, PriorityLine(None))
    got: list[int] = []

    async def taker(priority: int) -> None:
        assert await permits.take(-priority)
        got.append(priority)

    async with anyio.create_task_group() as tg:
        for priority in [1, 3, 2, 3]:
            tg.start_soon(taker, priority)
            await wait_all_tasks_blocked()
        assert permits.waiting == 4
        for _ in range(4):
            permits.give()
            await wait_all_tasks_blocked()
    assert got == [3, 3, 2, 1]
    assert permits.available == 0


async def test_a_rank_reads_the_virtual_clock_so_priorities_are_a_head_start_in_seconds() -> None:
    line: PriorityLine[str] = PriorityLine(2.0)
    start = anyio.current_time()
    assert line.rank(3) == start - 6.0
    await anyio.sleep(5)
    assert line.rank(0) == start + 5


# --- the priority function and the arguments ------------------------------------------------------


def test_a_priority_function_may_return_an_int_or_a_finite_number() -> None:
    assert priority_of(lambda request: request, 7) == 7
    assert priority_of(lambda request: request, 2.5) == 2.5
    assert priority_of(lambda request: request, Fraction(1, 2)) == 0.5


@pytest.mark.parametrize("value", ["high", None, True])
def test_a_priority_function_returning_no_number_is_named_in_a_type_error(value: Any) -> None:
    def importance(request: object) -> Any:
        return value

    with pytest.raises(TypeError, match=r"priority function '.*importance' returned .*an int"):
        priority_of(importance, "request")


def test_a_priority_function_returning_nan_or_infinity_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="finite"):
        priority_of(lambda request: math.inf, "request")
    with pytest.raises(ValueError, match="finite"):
        priority_of(lambda request: math.nan, "request")


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: ConcurrencyLimitLayer(2, **kw),
        lambda **kw: RateLimitLayer(2, **kw),
        lambda **kw: BufferLayer(2, **kw),
    ],
)
def test_every_layer_checks_priority_and_aging_when_it_is_made(make: Any) -> None:
    with pytest.raises(TypeError, match="priority must be a function"):
        make(priority=3)

    async def later(request: object) -> int:
        return 1

    with pytest.raises(TypeError, match="priority must be a plain"):
        make(priority=later)
    for aging in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="aging must be"):
            make(priority=context_priority, aging=aging)
    with pytest.raises(TypeError, match="aging must be"):
        make(priority=context_priority, aging="1s")
    make(priority=context_priority, aging=None)
    make(priority=context_priority, aging=0.25)


def test_parallel_tool_router_checks_priority() -> None:
    with pytest.raises(TypeError, match="priority must be a function"):
        ParallelToolRouter(ToolRouter(), priority=1)  # type: ignore[arg-type]


def test_check_aging_returns_seconds_or_none() -> None:
    assert check_aging(None) is None
    assert check_aging(2) == 2.0


def test_a_redis_limiter_refuses_priorities_when_the_layer_is_made() -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)  # never connected: refused before
    concurrency = RedisConcurrencyLimiter(client, "prio", 2)
    with pytest.raises(TypeError, match="priority= needs an in-memory ConcurrencyLimiter"):
        ConcurrencyLimitLayer(limiter=concurrency, priority=context_priority)
    ConcurrencyLimitLayer(limiter=concurrency)  # without priorities it is welcome
    bucket = RedisTokenBucket(client, "prio", 2)
    with pytest.raises(TypeError, match="priority= needs an in-memory TokenBucket"):
        RateLimitLayer(limiter=bucket, priority=context_priority)


def test_layers_sharing_a_limiter_by_priority_must_agree_on_aging() -> None:
    limiter = ConcurrencyLimiter(2)
    ConcurrencyLimitLayer(limiter=limiter, priority=context_priority, aging=2.0)
    ConcurrencyLimitLayer(limiter=limiter, priority=context_priority, aging=2.0)
    with pytest.raises(ValueError, match=r"already orders its waiters with aging=2\.0"):
        ConcurrencyLimitLayer(limiter=limiter, priority=context_priority)
    bucket = TokenBucket(2)
    RateLimitLayer(limiter=bucket, priority=context_priority, aging=None)
    with pytest.raises(ValueError, match="already orders its waiters with aging=None"):
        RateLimitLayer(limiter=bucket, priority=context_priority, aging=3.0)


def test_the_layers_repr_shows_a_priority() -> None:
    assert "priority=<function context_priority" in repr(
        ConcurrencyLimitLayer(2, priority=context_priority)
    )
    assert repr(ConcurrencyLimitLayer(2)) == "ConcurrencyLimitLayer(2)"
    assert "priority=" in repr(RateLimitLayer(2, priority=context_priority))
    assert "priority=" in repr(BufferLayer(2, priority=context_priority))
    assert repr(BufferLayer(2)) == "BufferLayer(2)"


# --- the caller's priority ------------------------------------------------------------------------


async def test_priority_scope_sets_what_context_priority_reads_and_nests() -> None:
    assert context_priority("any request") == 0
    with priority_scope(10):
        assert context_priority("any request") == 10
        with priority_scope(-2):
            assert context_priority(None) == -2
        assert context_priority(None) == 10
    assert context_priority(None) == 0


async def test_tasks_started_in_a_priority_scope_inherit_it() -> None:
    seen: list[int] = []

    async def child() -> None:
        seen.append(context_priority(None))

    with priority_scope(7):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
    assert seen == [7]


def test_priority_scope_takes_an_int() -> None:
    with pytest.raises(TypeError, match="takes an int, got str"), priority_scope("high"):  # type: ignore[arg-type]
        pass


# --- the layers: admission order, the aging bound, ready(), cancellation -------------------------

Request = tuple[str, int]  # (name, priority)


def by_request(request: Request) -> int:
    return request[1]


class Admissions:
    """An inner service that records when each request reaches it, then runs for 1 s."""

    def __init__(self) -> None:
        self.start = anyio.current_time()
        self.order: list[tuple[str, float]] = []

    async def __call__(self, request: Request) -> str:
        self.order.append((request[0], anyio.current_time() - self.start))
        await anyio.sleep(1)
        return request[0]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.order]


def _concurrency(inner: Service[Any, Any], aging: float | None) -> Service[Any, Any]:
    return ConcurrencyLimit(inner, 1, priority=by_request, aging=aging)


def _rate(inner: Service[Any, Any], aging: float | None) -> Service[Any, Any]:
    # one token a second, none stored: the inner service's 1 s runs overlap, admissions do not
    return RateLimit(inner, 1, priority=by_request, aging=aging)


def _buffer(inner: Service[Any, Any], aging: float | None) -> Service[Any, Any]:
    # the worker waits for the inner limit's permit, then grants the first queued request
    return Buffer(ConcurrencyLimit(inner, 1), 64, priority=by_request, aging=aging)


LAYERS = [
    pytest.param(_concurrency, id="ConcurrencyLimit"),
    pytest.param(_rate, id="RateLimit"),
    pytest.param(_buffer, id="Buffer"),
]
Make = Any


async def _run(make: Make, aging: float | None, scenario: Any) -> Admissions:
    admissions = Admissions()
    service = make(service_fn(admissions), aging)
    async with service, anyio.create_task_group() as tg:
        await scenario(service, tg)
    return admissions


async def _arrive(service: Service[Any, Any], tg: Any, *requests: Request) -> None:
    for request in requests:
        tg.start_soon(service, request)
        await wait_all_tasks_blocked()


@pytest.mark.parametrize("make", LAYERS)
async def test_waiters_are_admitted_by_priority_then_in_arrival_order(make: Make) -> None:
    async def scenario(service: Service[Any, Any], tg: Any) -> None:
        await _arrive(service, tg, ("blocker", 0), ("a", 1), ("b", 3), ("c", 1), ("d", 3))
        await _arrive(service, tg, ("e", -2), ("f", 2), ("g", 3))

    admissions = await _run(make, 1.0, scenario)
    assert admissions.order == [
        ("blocker", 0),
        ("b", 1),
        ("d", 2),
        ("g", 3),
        ("f", 4),
        ("a", 5),
        ("c", 6),
        ("e", 7),
    ]


def _stream_of(priority: int) -> Any:
    async def stream(service: Service[Any, Any], tg: Any) -> None:
        # "low" waits from t=0; a request of `priority` arrives every 0.5 s from t=0.25 to 14.75
        await _arrive(service, tg, ("blocker", 0), ("low", 0))
        await anyio.sleep(0.25)
        for k in range(30):
            tg.start_soon(service, (f"high{k}", priority))
            await anyio.sleep(0.5)

    return stream


_stream = _stream_of(5)


@pytest.mark.parametrize("make", LAYERS)
async def test_aging_admits_a_low_priority_by_its_bound_whatever_stream_of_high_ones(
    make: Make,
) -> None:
    admissions = await _run(make, 1.0, _stream)
    # the bound: "low" (priority 0, arrived at 0) goes before any priority 5 arriving after
    # 0 + (5 - 0) * 1.0 s. The ten that arrived before 5 s go first, one a second from t=1.
    assert admissions.names[:12] == ["blocker"] + [f"high{k}" for k in range(10)] + ["low"]
    assert dict(admissions.order)["low"] == 11
    assert len(admissions.order) == 32


def _default_aging(make: Make) -> Make:
    # the layer as a user makes it, without an aging argument: the default
    def made(inner: Service[Any, Any], aging: float | None) -> Service[Any, Any]:
        assert aging is None  # unused: the maker below leaves it out
        if make is _concurrency:
            return ConcurrencyLimit(inner, 1, priority=by_request)
        if make is _rate:
            return RateLimit(inner, 1, priority=by_request)
        return Buffer(ConcurrencyLimit(inner, 1), 64, priority=by_request)

    return made


@pytest.mark.parametrize("make", LAYERS)
async def test_by_default_one_priority_step_is_a_head_start_of_10_seconds(make: Make) -> None:
    admissions = await _run(_default_aging(make), None, _stream_of(1))
    # the twenty that arrived before 0 + (1 - 0) * 10 s go first, then "low", then the rest
    assert admissions.names[:22] == ["blocker"] + [f"high{k}" for k in range(20)] + ["low"]
    assert dict(admissions.order)["low"] == 21


@pytest.mark.parametrize("make", LAYERS)
async def test_with_strict_priorities_a_stream_of_high_ones_passes_first(make: Make) -> None:
    admissions = await _run(make, None, _stream)
    assert admissions.names == ["blocker"] + [f"high{k}" for k in range(30)] + ["low"]
    assert dict(admissions.order)["low"] == 31


@pytest.mark.parametrize("make", LAYERS[:2])  # a buffer's ready() waits for a place: below
@pytest.mark.parametrize("reserve", [True, False])
async def test_a_reservation_made_by_ready_waits_with_priority_0(make: Make, reserve: bool) -> None:
    async def ready_then_call(service: Service[Any, Any]) -> None:
        if reserve:
            await service.ready()  # does not know the request: waits with priority 0
        await service.call(("a", 10))

    async def scenario(service: Service[Any, Any], tg: Any) -> None:
        await _arrive(service, tg, ("blocker", 0))
        tg.start_soon(ready_then_call, service)
        await wait_all_tasks_blocked()
        await _arrive(service, tg, ("b", 5))

    admissions = await _run(make, 1.0, scenario)
    assert admissions.names == (["blocker", "b", "a"] if reserve else ["blocker", "a", "b"])


@pytest.mark.parametrize("make", LAYERS)
async def test_a_prioritised_waiter_cancelled_takes_nothing_and_the_line_stays_in_order(
    make: Make,
) -> None:
    cancelled: list[str] = []

    async def scenario(service: Service[Any, Any], tg: Any) -> None:
        await _arrive(service, tg, ("blocker", 0), ("x", 1))
        scope = anyio.CancelScope()
        tg.start_soon(_cancellable, service, ("y", 5), scope, cancelled)
        await wait_all_tasks_blocked()
        await _arrive(service, tg, ("z", 3))
        scope.cancel()
        await wait_all_tasks_blocked()
        await _arrive(service, tg, ("w", 2))

    admissions = await _run(make, 1.0, scenario)
    assert cancelled == ["y"]
    assert admissions.order == [("blocker", 0), ("z", 1), ("w", 2), ("x", 3)]


async def _cancellable(
    service: Service[Any, Any], request: Request, scope: anyio.CancelScope, cancelled: list[str]
) -> None:
    with scope:
        await service(request)
    if scope.cancelled_caught:
        cancelled.append(request[0])


async def test_a_limiter_shared_with_an_unprioritised_service_gives_its_waiters_priority_0() -> (
    None
):
    admissions = Admissions()
    limiter = ConcurrencyLimiter(1)
    plain = ConcurrencyLimit(service_fn(admissions), limiter=limiter)
    ranked = ConcurrencyLimit(service_fn(admissions), limiter=limiter, priority=by_request)
    async with anyio.create_task_group() as tg:
        await _arrive(plain, tg, ("blocker", 9), ("plain", 9))  # its priority is not read
        await _arrive(ranked, tg, ("minus", -1), ("plus", 1))
    assert admissions.names == ["blocker", "plus", "plain", "minus"]
    assert limiter.idle


async def test_a_limiter_given_priorities_while_tasks_wait_keeps_them_first() -> None:
    admissions = Admissions()
    limiter = ConcurrencyLimiter(1)
    plain = ConcurrencyLimit(service_fn(admissions), limiter=limiter)
    async with anyio.create_task_group() as tg:
        await _arrive(plain, tg, ("blocker", 0), ("first", 0))
        ranked = ConcurrencyLimit(service_fn(admissions), limiter=limiter, priority=by_request)
        await _arrive(ranked, tg, ("urgent", 99))
    assert admissions.names == ["blocker", "first", "urgent"]


async def test_a_bucket_given_priorities_while_tasks_wait_keeps_them_first() -> None:
    admissions = Admissions()
    bucket = TokenBucket(1)
    plain = RateLimit(service_fn(admissions), limiter=bucket)
    async with anyio.create_task_group() as tg:
        await _arrive(plain, tg, ("blocker", 0), ("first", 0))
        ranked = RateLimit(service_fn(admissions), limiter=bucket, priority=by_request)
        await _arrive(ranked, tg, ("minus", -5), ("urgent", 99))
    assert admissions.order == [("blocker", 0), ("first", 1), ("urgent", 2), ("minus", 3)]
    assert bucket.statistics().waiting == 0


async def test_a_rate_limit_with_a_cost_function_waits_by_priority_too() -> None:
    admissions = Admissions()
    service = RateLimit(
        service_fn(admissions), 2, burst=2, cost=lambda request: 2, priority=by_request
    )
    async with anyio.create_task_group() as tg:
        await _arrive(service, tg, ("blocker", 0), ("a", 0), ("b", 1))
    assert admissions.order == [("blocker", 0), ("b", 1), ("a", 2)]


@pytest.mark.parametrize("make", LAYERS)
async def test_a_failing_priority_function_fails_the_call_and_gives_everything_back(
    make: Make,
) -> None:
    def broken(request: Request) -> int:
        if request[0] == "bad":
            raise LookupError("no priority")
        return 0

    admissions = Admissions()
    inner = service_fn(admissions)
    service = make(inner, 1.0)
    service._priority = broken  # the same layer, with a function that fails on one request
    async with service, anyio.create_task_group() as tg:
        await _arrive(service, tg, ("blocker", 0))
        with pytest.raises(LookupError, match="no priority"):
            await service(("bad", 0))
        await _arrive(service, tg, ("after", 0))
    assert admissions.names == ["blocker", "after"]


async def test_a_buffer_serves_waiters_for_a_place_by_priority() -> None:
    admissions = Admissions()
    buffer = Buffer(ConcurrencyLimit(service_fn(admissions), 1), 1, priority=by_request)
    async with buffer, anyio.create_task_group() as tg:
        # "x" runs, "q" holds the one place while queued: the rest wait for a place
        await _arrive(buffer, tg, ("x", 0), ("q", 0), ("a", 1), ("b", 4), ("c", 2))
    assert admissions.names == ["x", "q", "b", "c", "a"]


@pytest.mark.parametrize("reserve", [True, False])
async def test_a_buffers_place_reserved_by_ready_waits_with_priority_0(reserve: bool) -> None:
    admissions = Admissions()
    buffer = Buffer(ConcurrencyLimit(service_fn(admissions), 1), 1, priority=by_request)

    async def ready_then_call() -> None:
        if reserve:
            await buffer.ready()
        await buffer.call(("a", 10))

    async with buffer, anyio.create_task_group() as tg:
        await _arrive(buffer, tg, ("x", 0), ("q", 0))
        tg.start_soon(ready_then_call)
        await wait_all_tasks_blocked()
        await _arrive(buffer, tg, ("b", 5))
    assert admissions.names == (["x", "q", "b", "a"] if reserve else ["x", "q", "a", "b"])


async def test_a_context_priority_orders_callers_through_a_layer() -> None:
    admissions = Admissions()
    limit = ConcurrencyLimitLayer(1, priority=context_priority).layer(service_fn(admissions))

    async def as_caller(priority: int, name: str) -> None:
        with priority_scope(priority):
            await limit((name, 0))

    async with anyio.create_task_group() as tg:
        for priority, name in [(0, "blocker"), (0, "batch"), (10, "interactive")]:
            tg.start_soon(as_caller, priority, name)
            await wait_all_tasks_blocked()
    assert admissions.names == ["blocker", "interactive", "batch"]


def _slow_concurrency(inner: Service[Any, Any], aging: float | None) -> Service[Any, Any]:
    return ConcurrencyLimit(inner, 1, priority=by_request, aging=aging)


def _slow_rate(inner: Service[Any, Any], aging: float | None) -> Service[Any, Any]:
    return RateLimit(inner, 1, per=100, priority=by_request, aging=aging)  # one per 100 s


def _slow_buffer(inner: Service[Any, Any], aging: float | None) -> Service[Any, Any]:
    return Buffer(ConcurrencyLimit(inner, 1), 64, priority=by_request, aging=aging)


class SlowAdmissions(Admissions):
    async def __call__(self, request: Request) -> str:
        self.order.append((request[0], anyio.current_time() - self.start))
        await anyio.sleep(100)  # everyone arrives while the first runs: all of them wait
        return request[0]


@settings(deadline=None, max_examples=40)
@given(
    make=st.sampled_from([_slow_concurrency, _slow_rate, _slow_buffer]),
    aging=st.sampled_from([None, 0.5, 1.0, 2.0]),
    arrivals=st.lists(st.tuples(st.sampled_from([0, 1, 3]), st.integers(-2, 4)), max_size=25),
)
async def test_admissions_follow_the_reference_sort_by_rank_then_arrival(
    make: Make, aging: float | None, arrivals: list[tuple[int, int]]
) -> None:
    admissions = SlowAdmissions()
    service = make(service_fn(admissions), aging)
    expected = []
    async with service, anyio.create_task_group() as tg:
        await _arrive(service, tg, ("blocker", 0))
        now = Fraction(1, 4)  # never a multiple of 100 s: no arrival ties with an admission
        await anyio.sleep(0.25)
        for seq, (gap, priority) in enumerate(arrivals):
            await anyio.sleep(gap / 2)
            now += Fraction(gap, 2)
            await _arrive(service, tg, (str(seq), priority))
            rank = -priority if aging is None else now - priority * Fraction(aging)
            expected.append((rank, seq))
    assert admissions.names == ["blocker"] + [str(seq) for _, seq in sorted(expected)]


async def test_the_builder_shorthands_take_priority_and_aging() -> None:
    admissions = Admissions()
    svc = (
        ServiceBuilder()
        .buffer(8, priority=by_request, aging=None)
        .rate_limit(100, priority=by_request, aging=2.0)
        .concurrency_limit(1, priority=by_request, aging=0.5)
        .service(service_fn(admissions))
    )
    async with svc, anyio.create_task_group() as tg:
        await _arrive(svc, tg, ("blocker", 0), ("low", 0), ("high", 1))
    assert admissions.names == ["blocker", "high", "low"]
    with pytest.raises(ValueError, match="aging must be"):
        ServiceBuilder().concurrency_limit(1, priority=by_request, aging=0)
