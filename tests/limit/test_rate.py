from __future__ import annotations

import contextlib
import math
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import override

from towerpy import (
    Elapsed,
    Middleware,
    RateLimit,
    RateLimitLayer,
    RequestTooLarge,
    Service,
    ServiceBuilder,
    TimeoutLayer,
    TokenBucket,
    lowlevel,
    service_fn,
)
from towerpy.testing import mock_service, wait_all_tasks_blocked

from ..reference import settle

pytestmark = pytest.mark.anyio


async def echo(x: Any) -> Any:
    return x


class Log(Middleware[Any, Any], direct_call=True):
    """Records when each request got through the layers above it, and in what order.

    A direct call: the time is taken before the inner service's readiness is waited for.
    """

    def __init__(self, inner: Service[Any, Any]) -> None:
        super().__init__(inner)
        self.admitted: list[tuple[Any, float]] = []

    @override
    async def call(self, request: Any) -> Any:
        self.admitted.append((request, anyio.current_time()))
        return await self.inner(request)


def tokens(svc: RateLimit[Any, Any]) -> float:
    return svc.statistics().tokens


async def test_requests_beyond_the_burst_wait_for_the_refill() -> None:
    log = Log(service_fn(echo))
    svc = RateLimit(log, 2, burst=3)
    start = anyio.current_time()
    for i in range(6):
        assert await svc(i) == i
    assert [at - start for _, at in log.admitted] == [0, 0, 0, 0.5, 1.0, 1.5]


async def test_a_cost_function_sets_the_tokens_each_request_takes() -> None:
    log = Log(service_fn(echo))
    svc = RateLimit(log, 10, per=60, cost=len)  # ten characters a minute
    start = anyio.current_time()
    for text in ["0123456789", "abcde", "xyz"]:
        await svc(text)
    assert [at - start for _, at in log.admitted] == [0, 30, 48]


async def test_a_shared_bucket_is_one_budget_across_three_services() -> None:
    bucket = TokenBucket(4, burst=2)  # a token every 0.25 s
    log = Log(service_fn(echo))
    layer = RateLimitLayer(limiter=bucket)
    services = [layer.layer(log), layer.layer(log), RateLimit(log, limiter=bucket)]
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for i in range(9):
            tg.start_soon(services[i % 3], i)
            await wait_all_tasks_blocked()
    times = [at - start for _, at in log.admitted]
    assert times == [0, 0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [request for request, _ in log.admitted] == list(range(9))  # first come, first served
    assert all(svc.limiter is bucket for svc in services)


async def test_each_layer_call_gets_its_own_bucket_when_given_a_rate() -> None:
    layer = RateLimitLayer(1)
    first, second = layer.layer(service_fn(echo)), layer.layer(service_fn(echo))
    start = anyio.current_time()
    await first(1)
    await second(2)  # not slowed by the first service's request
    assert anyio.current_time() == start
    assert first.limiter is not second.limiter


@pytest.mark.parametrize(("actual", "next_at"), [(2, 0.25), (8, 1.0), (12, 1.5), (0, 0.0)])
async def test_actual_cost_settles_the_estimate_and_moves_the_next_admission(
    actual: float, next_at: float
) -> None:
    log = Log(service_fn(echo))
    svc = RateLimit(log, 8, cost=lambda _: 8, actual_cost=lambda _req, _resp: actual)
    start = anyio.current_time()
    await svc("first")  # estimated 8: the bucket is empty, the real cost is settled after
    assert tokens(svc) == 8 - actual
    await svc("second")
    assert [at - start for _, at in log.admitted] == [0, next_at]


async def test_a_refund_admits_a_sleeping_waiter_sooner() -> None:
    inner, handle = mock_service()
    log = Log(inner)
    svc = RateLimit(log, 8, cost=lambda _: 8, actual_cost=lambda _req, resp: resp)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        _, first = await handle.next_request()
        tg.start_soon(svc, "second")  # needs 8 tokens: due at 1.0 s
        await wait_all_tasks_blocked()
        await anyio.sleep(0.125)
        first.send(2)  # 6 refunded: 7 tokens at 0.125 s, the 8th at 0.25 s
        _, second = await handle.next_request()
        second.send(8)
    assert [at - start for _, at in log.admitted] == [0, 0.25]


async def test_a_debt_delays_a_sleeping_waiter() -> None:
    inner, handle = mock_service()
    log = Log(inner)
    svc = RateLimit(log, 8, cost=lambda _: 8, actual_cost=lambda _req, resp: resp)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        _, first = await handle.next_request()
        tg.start_soon(svc, "second")  # due at 1.0 s
        await wait_all_tasks_blocked()
        await anyio.sleep(0.5)
        first.send(16)  # 8 more owed: due at 2.0 s
        _, second = await handle.next_request()
        second.send(8)
    assert [at - start for _, at in log.admitted] == [0, 2.0]


async def test_ready_reserves_one_token_and_call_uses_it() -> None:
    log = Log(service_fn(echo))
    svc = RateLimit(log, 1, burst=2)
    await svc.ready()
    await svc.ready()  # still one reservation
    assert tokens(svc) == 1
    start = anyio.current_time()
    await svc.call("reserved")
    await svc.call("second")
    await svc.call("third")  # waits for the refill
    assert [at - start for _, at in log.admitted] == [0, 0, 1]


async def test_an_unused_reservation_is_refunded_when_its_task_ends() -> None:
    svc = RateLimit(service_fn(echo), 1, burst=1)

    async def reserve_and_leave() -> None:
        await svc.ready()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserve_and_leave)
    await settle()
    assert tokens(svc) == 1


async def test_try_ready_reserves_only_when_a_token_is_there() -> None:
    svc = RateLimit(service_fn(echo), 1, burst=1)
    assert await svc.try_ready()
    assert tokens(svc) == 0
    lowlevel.drop(svc)
    assert tokens(svc) == 1
    await svc("spend it")
    assert not await svc.try_ready()
    assert lowlevel.held(svc) is None


async def test_with_a_cost_function_ready_reserves_nothing() -> None:
    inner, handle = mock_service()
    svc = RateLimit(inner, 4, cost=len)
    handle.allow(1)
    await svc.ready()  # the inner service's readiness only
    assert tokens(svc) == 4
    assert handle.allowed == 0
    assert await svc.try_ready()
    lowlevel.drop(inner)
    handle.allow(0)
    assert not await svc.try_ready()
    assert tokens(svc) == 4


@pytest.mark.parametrize(
    "leave", ["return", "raise", "cancel_waiting", "cancel_running", "timeout", "unused_ready"]
)
async def test_every_way_of_leaving_gives_back_what_was_not_spent(leave: str) -> None:
    inner, handle = mock_service()
    svc = RateLimit(inner, 1, burst=1)
    timed = TimeoutLayer(0.5).layer(svc)
    outcomes: list[str] = []
    start = anyio.current_time()

    async def second(scope: anyio.CancelScope) -> None:
        with scope:
            try:
                if leave == "timeout":
                    await timed.call("second")  # waits for the token longer than the limit
                elif leave == "unused_ready":
                    await svc.ready()
                else:
                    await svc("second")
            except ValueError:
                outcomes.append("raised")
            except Elapsed:
                outcomes.append("elapsed")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        _, first = await handle.next_request()
        first.send(None)
        tg.start_soon(second, scope)  # waits for a token until t=1
        await wait_all_tasks_blocked()
        if leave == "cancel_waiting":
            scope.cancel()
        elif leave not in ("timeout", "unused_ready"):
            _, responder = await handle.next_request()
            assert anyio.current_time() - start == 1
            if leave == "return":
                responder.send(None)
            elif leave == "raise":
                responder.fail(ValueError("boom"))
            else:
                scope.cancel()
    await settle()
    stats = svc.statistics()
    assert stats.waiting == 0
    # (when the test ended, tokens then): an admitted request spent its token, the others
    # took nothing (left while waiting) or gave it back (an unused reservation)
    expected = {"cancel_waiting": (0, 0), "timeout": (0.5, 0.5), "unused_ready": (1, 1)}
    assert (anyio.current_time() - start, stats.tokens) == expected.get(leave, (1, 0))
    await anyio.sleep(1)
    assert svc.statistics().tokens == 1
    assert outcomes == {"raise": ["raised"], "timeout": ["elapsed"]}.get(leave, [])


@settings(deadline=None, max_examples=50)
@given(
    rate=st.sampled_from([1, 2, 4]),
    per=st.sampled_from([0.5, 1, 2]),
    burst=st.integers(3, 6),
    requests=st.lists(
        st.tuples(
            st.integers(0, 16),  # arrival, in eighths of a second
            st.integers(0, 3),  # cost
            st.integers(0, 8),  # latency, in eighths
            st.booleans(),  # whether the request fails
        ),
        min_size=1,
        max_size=20,
    ),
)
async def test_every_window_admits_at_most_burst_plus_rate_and_waiters_go_in_order(
    rate: float, per: float, burst: int, requests: list[tuple[int, int, int, bool]]
) -> None:
    async def work(request: tuple[int, int, int, bool]) -> None:
        _, _, latency, fails = request
        await anyio.sleep(latency / 8)
        if fails:
            raise ValueError("drawn failure")

    log = Log(service_fn(work))
    svc = RateLimit(log, rate, per, burst=burst, cost=lambda request: request[1])
    entered: list[int] = []
    start = anyio.current_time()

    async def client(i: int) -> None:
        await anyio.sleep_until(start + requests[i][0] / 8)
        entered.append(i)
        with contextlib.suppress(ValueError):
            await svc((i, *requests[i][1:]))

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(client, i)
    admitted = [(request[0], at - start) for request, at in log.admitted]
    assert [i for i, _ in admitted] == entered  # first come, first served
    times = [at for _, at in admitted]
    costs = [requests[i][1] for i, _ in admitted]
    for first in range(len(times)):
        for last in range(first, len(times)):
            window = times[last] - times[first]
            assert sum(costs[first : last + 1]) <= burst + rate * window / per
    assert svc.statistics().waiting == 0


def within_the_bound(admitted: list[tuple[float, float]], burst: float, rate: float) -> bool:
    """Whether every window of the (time, cost) admissions holds at most burst + rate * t."""
    return all(
        sum(cost for _, cost in admitted[first : last + 1])
        <= burst + rate * (admitted[last][0] - admitted[first][0])
        for first in range(len(admitted))
        for last in range(first, len(admitted))
    )


async def test_an_unused_reservation_given_back_late_does_not_let_the_next_burst_overshoot() -> (
    None
):
    log = Log(service_fn(echo))
    svc = RateLimit(log, 1, burst=1)
    start = anyio.current_time()

    async def reserve_and_leave_later() -> None:
        await svc.ready()  # takes the token at 0, and never uses it
        await anyio.sleep(1.5)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reserve_and_leave_later)
        await anyio.sleep(1)
        await svc("a")  # the token refilled since: taken at 1
    await settle()  # the reservation is given back at 1.5, but its token was refilled long ago
    await svc("b")
    admitted = [(at - start, 1.0) for _, at in log.admitted]
    assert admitted == [(1, 1), (2, 1)]
    assert within_the_bound(admitted, 1, 1)


async def test_a_ready_cancelled_late_with_its_token_does_not_let_the_next_burst_overshoot() -> (
    None
):
    inner, handle = mock_service()
    log = Log(inner)
    svc = RateLimit(log, 1, burst=1)
    handle.allow(0)  # the inner service is not ready: ready() holds its token while it waits
    scope = anyio.CancelScope()
    start = anyio.current_time()

    async def wait_until_ready() -> None:
        with scope:
            await svc.ready()  # takes the token at 0

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_until_ready)
        await anyio.sleep(1)
        tg.start_soon(svc, "a")  # the token refilled since: taken at 1
        await anyio.sleep(0.5)
        scope.cancel()  # gives its token back at 1.5: refilled long ago
        await wait_all_tasks_blocked()
        tg.start_soon(svc, "b")
        await wait_all_tasks_blocked()
        handle.allow(None)
        for _ in range(2):
            _, responder = await handle.next_request()
            responder.send(None)
    admitted = [(at - start, 1.0) for _, at in log.admitted]
    assert admitted == [(1, 1), (2, 1)]
    assert within_the_bound(admitted, 1, 1)


async def test_an_actual_cost_refunded_late_does_not_let_the_next_burst_overshoot() -> None:
    inner, handle = mock_service()
    log = Log(inner)
    svc = RateLimit(log, 1, burst=2, cost=lambda _: 2, actual_cost=lambda _req, resp: resp)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "a")  # 2 estimated at 0: empty until 2
        _, a = await handle.next_request()
        await anyio.sleep(2)
        tg.start_soon(svc, "b")  # full again: takes 2 at 2
        _, b = await handle.next_request()
        await anyio.sleep(0.5)
        a.send(0)  # "a" cost nothing, but its 2 tokens were refilled long ago
        await wait_all_tasks_blocked()
        tg.start_soon(svc, "c")
        _, c = await handle.next_request()
        b.send(2)
        c.send(2)
    admitted = [(at - start, 0.0 if request == "a" else 2.0) for request, at in log.admitted]
    assert admitted == [(0, 0), (2, 2), (4, 2)]
    assert within_the_bound(admitted, 2, 1)


async def test_an_actual_cost_refund_gives_back_what_still_counts_when_others_took_some() -> None:
    inner, handle = mock_service()
    log = Log(inner)
    svc = RateLimit(
        log,
        1,
        burst=2,
        cost=lambda request: 1.5 if request == "d" else 1,
        actual_cost=lambda _req, resp: resp,
    )
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "a")  # 1 left at 0
        _, a = await handle.next_request()
        await anyio.sleep(0.5)
        tg.start_soon(svc, "b")  # 0.5 left at 0.5
        _, b = await handle.next_request()
        await anyio.sleep(1)
        tg.start_soon(svc, "c")  # 0.5 left at 1.5
        _, c = await handle.next_request()
        # "a" cost nothing: had it never been admitted, the bucket would have been full at
        # 1.5 s, before "c": 1 token now, and "d" (1.5 tokens) must wait half a second
        a.send(0)
        b.send(1)
        c.send(1)
        await wait_all_tasks_blocked()
        assert svc.statistics().tokens == 1
        tg.start_soon(svc, "d")
        _, d = await handle.next_request()
        d.send(1.5)
    costs = {"a": 0.0, "b": 1.0, "c": 1.0, "d": 1.5}
    admitted = [(at - start, costs[request]) for request, at in log.admitted]
    assert admitted == [(0, 0), (0.5, 1), (1.5, 1), (2, 1.5)]
    assert within_the_bound(admitted, 2, 1)


@settings(deadline=None, max_examples=50)
@given(
    rate=st.sampled_from([1, 2, 4]),
    per=st.sampled_from([0.5, 1, 2]),
    burst=st.integers(3, 6),
    requests=st.lists(
        st.tuples(
            st.integers(0, 24),  # arrival, in eighths of a second
            st.integers(0, 3),  # estimated cost
            st.integers(0, 5),  # actual cost
            st.integers(0, 16),  # latency, in eighths
        ),
        min_size=1,
        max_size=16,
    ),
)
async def test_every_window_holds_the_bound_whatever_the_actual_costs_settle_to(
    rate: float, per: float, burst: int, requests: list[tuple[int, int, int, int]]
) -> None:
    # (time, tokens, admitted) in the order it happened: admissions, net of their refunds,
    # and debts, counted when they are charged
    events: list[tuple[float, float, bool]] = []
    places: dict[int, int] = {}

    async def work(request: tuple[int, int, int, int]) -> None:
        i, estimate, actual, latency = request
        places[i] = len(events)
        events.append((anyio.current_time() - start, min(estimate, actual), True))
        await anyio.sleep(latency / 8)

    def actual_cost(request: tuple[int, int, int, int], _response: None) -> float:
        _, estimate, actual, _ = request
        if actual > estimate:
            events.append((anyio.current_time() - start, actual - estimate, False))
        return actual

    svc = RateLimit(
        service_fn(work), rate, per, burst=burst, cost=lambda r: r[1], actual_cost=actual_cost
    )
    start = anyio.current_time()

    async def client(i: int) -> None:
        arrival, estimate, actual, latency = requests[i]
        await anyio.sleep_until(start + arrival / 8)
        await svc((i, estimate, actual, latency))

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(client, i)
    assert len(places) == len(requests)
    for last, (end, _, admitted) in enumerate(events):
        if admitted:  # a debt is not admitted: it delays the admissions after it
            for first in range(last + 1):
                total = sum(tokens for _, tokens, _ in events[first : last + 1])
                assert total <= burst + rate * (end - events[first][0]) / per + 1e-9


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf])
async def test_a_cost_function_returning_a_bad_number_fails_the_call(bad: float) -> None:
    def estimate(_: object) -> float:
        return bad

    svc = RateLimit(service_fn(echo), 5, cost=estimate)
    with pytest.raises(ValueError, match=r"the cost function '.*estimate' returned"):
        await svc("x")
    assert tokens(svc) == 5


async def test_a_cost_function_returning_a_non_number_fails_the_call() -> None:
    svc = RateLimit(service_fn(echo), 5, cost=lambda _: "3")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="returned str '3'; a cost must be a finite number"):
        await svc("x")


async def test_an_actual_cost_returning_a_bad_number_fails_the_call() -> None:
    svc = RateLimit(service_fn(echo), 5, actual_cost=lambda _req, _resp: -2)
    with pytest.raises(ValueError, match=r"the actual_cost function '.*<lambda>' returned -2"):
        await svc("x")


async def test_a_request_costing_more_than_the_burst_raises_at_once() -> None:
    svc = RateLimit(service_fn(echo), 100, per=60, cost=len)
    start = anyio.current_time()
    with pytest.raises(RequestTooLarge, match=r"costing 101 tokens .* at most 100"):
        await svc("x" * 101)
    assert anyio.current_time() == start
    assert isinstance(RequestTooLarge("x"), ValueError)


@pytest.mark.parametrize("arg", ["rate", "per", "burst"])
@pytest.mark.parametrize("bad", [0, -2.0, math.nan, math.inf])
def test_a_bad_rate_per_or_burst_is_refused_at_construction(arg: str, bad: float) -> None:
    kwargs: dict[str, Any] = {"rate": 2.0, "per": 1.0, "burst": None, arg: bad}
    for make in (
        lambda: RateLimitLayer(**kwargs),
        lambda: RateLimit(service_fn(echo), **kwargs),
        lambda: ServiceBuilder().rate_limit(**kwargs),
    ):
        with pytest.raises(ValueError, match=rf"^{arg} must be a finite number > 0"):
            make()


def test_neither_or_both_of_rate_and_limiter_is_refused() -> None:
    with pytest.raises(ValueError, match=r"needs rate .* or limiter="):
        RateLimitLayer()
    with pytest.raises(ValueError, match="rate or limiter=, not both"):
        RateLimitLayer(5, limiter=TokenBucket(5))
    with pytest.raises(ValueError, match="per and burst belong to the shared bucket"):
        RateLimitLayer(per=60, limiter=TokenBucket(5))
    with pytest.raises(TypeError, match="limiter must be a TokenBucket"):
        RateLimitLayer(limiter=5)  # type: ignore[arg-type]


def test_a_burst_below_one_request_is_refused_unless_costs_are_given() -> None:
    with pytest.raises(ValueError, match=r"burst is 0.5, below the cost of one request"):
        RateLimitLayer(0.5)
    with pytest.raises(ValueError, match=r"burst is 0.5"):
        RateLimitLayer(limiter=TokenBucket(1, burst=0.5))
    RateLimitLayer(0.5, cost=lambda _: 0.25)
    RateLimitLayer(1, per=2)  # one request every two seconds


def test_cost_functions_must_be_plain_functions() -> None:
    async def estimate(_: object) -> float:
        return 1

    with pytest.raises(TypeError, match="cost must be a plain"):
        RateLimitLayer(5, cost=estimate)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="actual_cost must be a function"):
        RateLimitLayer(5, actual_cost=3)  # type: ignore[arg-type]


async def test_the_builder_shorthand_is_the_layer() -> None:
    builder = ServiceBuilder().rate_limit(30, per=60, burst=5)
    (layer,) = builder.layers
    assert isinstance(layer, RateLimitLayer)
    svc = builder.service(service_fn(echo))
    assert isinstance(svc, RateLimit)
    stats = svc.statistics()
    assert (stats.rate, stats.per, stats.burst, stats.tokens) == (30, 60, 5, 5)
