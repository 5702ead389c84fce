"""Balance: readiness-aware picks, waiting without polling, endpoints at run time, no leaks."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import override

from towerpy import (
    Balance,
    Circuit,
    CircuitBreaker,
    ConcurrencyLimit,
    ConstantBackoff,
    LoadShed,
    Middleware,
    Overloaded,
    ProviderUnavailable,
    RetryPolicy,
    Service,
    ServiceBuilder,
    ServiceClosed,
    service_fn,
)
from towerpy.testing import MockHandle, mock_service, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


class Probed(Middleware[Any, Any], direct_call=True):
    """Counts how often the balance asks an endpoint for its readiness, and what it sends it."""

    def __init__(self, inner: Service[Any, Any], name: str) -> None:
        super().__init__(inner)
        self.name = name
        self.try_readies = 0
        self.readies = 0
        self.requests: list[Any] = []

    @override
    async def ready(self) -> None:
        self.readies += 1
        await self.inner.ready()

    @override
    async def try_ready(self) -> bool:
        self.try_readies += 1
        return await self.inner.try_ready()

    @override
    async def call(self, request: Any) -> Any:
        self.requests.append(request)
        return await self.inner(request)


def limited(
    name: str, capacity: int = 1
) -> tuple[Probed, ConcurrencyLimit[Any, Any], MockHandle[Any, Any]]:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, capacity)
    return Probed(limit, name), limit, handle


async def echo(request: Any) -> Any:
    return request


async def test_a_request_never_goes_to_a_full_endpoint_while_another_is_free() -> None:
    a, a_limit, a_handle = limited("a")
    b, b_limit, b_handle = limited("b")
    for seed in range(20):
        svc = Balance([a, b], rng=random.Random(seed))
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc, "first")
            await wait_all_tasks_blocked()
            busy, free = (a_handle, b_handle) if a_handle.pending else (b_handle, a_handle)
            tg.start_soon(svc, "second")
            await wait_all_tasks_blocked()
            assert (busy.pending, free.pending) == (1, 1)  # the second went to the free one
            for handle in (a_handle, b_handle):
                _, responder = await handle.next_request()
                responder.send("ok")
    assert a_limit.statistics().in_flight == b_limit.statistics().in_flight == 0


async def test_an_endpoint_whose_circuit_is_open_is_skipped_without_a_request() -> None:
    down = ProviderUnavailable("down", retryable=True)
    calls = {"open": 0, "healthy": 0}

    async def failing(request: Any) -> Any:
        calls["open"] += 1
        raise down

    async def healthy(request: Any) -> Any:
        calls["healthy"] += 1
        return request

    breaker = CircuitBreaker(1, recovery_time=60.0)
    broken = Circuit(service_fn(failing), breaker)
    breaker.trip()
    svc = Balance([broken, service_fn(healthy)])
    for n in range(50):
        assert await svc(n) == n
    assert calls == {"open": 0, "healthy": 50}
    assert breaker.statistics().rejected == 0  # never even refused: never sent


async def test_ready_reserves_on_the_pick_and_gives_back_what_probing_reserved_elsewhere() -> None:
    a, a_limit, a_handle = limited("a")
    b, b_limit, b_handle = limited("b")
    svc = Balance([a, b])
    await svc.ready()
    # both endpoints were probed (p2c compares two), one is reserved for this task's next call
    assert a.try_readies == b.try_readies == 1
    assert a_limit.statistics().in_flight + b_limit.statistics().in_flight == 1
    picked, picked_handle = (a, a_handle) if a_limit.statistics().in_flight else (b, b_handle)

    async def answer() -> None:
        _, responder = await picked_handle.next_request()
        responder.send("ok")

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        assert await svc.call("x") == "ok"  # this task's next call goes to the pick
    assert picked.requests == ["x"]
    svc.drop_reservation()
    assert a_limit.statistics().in_flight == b_limit.statistics().in_flight == 0


async def test_drop_reservation_gives_back_the_pick_at_once() -> None:
    a, a_limit, _ = limited("a")
    svc = Balance([a])
    await svc.ready()
    assert a_limit.statistics().in_flight == 1
    svc.drop_reservation()
    assert a_limit.statistics().in_flight == 0


async def test_when_none_is_ready_it_waits_for_the_first_that_becomes_ready_without_polling() -> (
    None
):
    a, a_limit, a_handle = limited("a")
    b, b_limit, b_handle = limited("b")
    svc = Balance([a, b])
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        tg.start_soon(svc, "second")
        await wait_all_tasks_blocked()
        probes = a.try_readies + b.try_readies
        start = anyio.current_time()
        tg.start_soon(svc, "third")
        await wait_all_tasks_blocked()
        await anyio.sleep(100.0)  # a poller would ask again and again meanwhile
        assert a.try_readies + b.try_readies == probes + 2  # asked once each, then waited
        assert a.readies == b.readies == 1
        _, responder = await b_handle.next_request()
        responder.send("ok")  # b frees up first: the waiting request goes there
        await wait_all_tasks_blocked()
        assert b.requests[-1] == "third"
        assert anyio.current_time() == start + 100.0
        for handle in (a_handle, b_handle):
            _, responder = await handle.next_request()
            responder.send("ok")
    assert a_limit.statistics().in_flight == b_limit.statistics().in_flight == 0


async def test_when_every_circuit_is_open_it_waits_for_the_first_probe_and_sends_it() -> None:
    calls: list[str] = []

    def endpoint(name: str, recovery: float) -> Circuit[Any, Any]:
        async def answer(request: Any) -> Any:
            calls.append(name)
            return name

        breaker = CircuitBreaker(1, recovery_time=recovery)
        breaker.trip()
        return Circuit(service_fn(answer), breaker)

    slow, fast = endpoint("slow", 30.0), endpoint("fast", 4.0)
    svc = Balance([slow, fast])
    start = anyio.current_time()
    assert await svc("x") == "fast"
    assert anyio.current_time() - start == 4.0
    assert calls == ["fast"]
    assert fast.breaker.state == "closed"  # the probe succeeded
    assert slow.breaker.statistics().probes_in_flight == 0


async def test_a_waiting_caller_cancelled_leaves_nothing_held_anywhere() -> None:
    a, a_limit, a_handle = limited("a")
    b, b_limit, b_handle = limited("b")
    svc = Balance([a, b])
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        tg.start_soon(svc, "second")
        await wait_all_tasks_blocked()
        with anyio.move_on_after(5.0):
            await svc.ready()
        for handle in (a_handle, b_handle):
            _, responder = await handle.next_request()
            responder.send("ok")
    assert a_limit.statistics().in_flight == b_limit.statistics().in_flight == 0
    assert a_limit.statistics().waiting == b_limit.statistics().waiting == 0


async def test_two_endpoints_ready_at_once_while_waiting_keep_one_reservation() -> None:
    a, a_limit, a_handle = limited("a")
    b, b_limit, b_handle = limited("b")
    svc = Balance([a, b])
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        tg.start_soon(svc, "second")
        await wait_all_tasks_blocked()
        waiter = anyio.Event()

        async def wait_then_hold() -> None:
            await svc.ready()
            waiter.set()
            await anyio.sleep(10.0)
            svc.drop_reservation()

        tg.start_soon(wait_then_hold)
        await wait_all_tasks_blocked()
        (_, ra), (_, rb) = await a_handle.next_request(), await b_handle.next_request()
        ra.send("ok")
        rb.send("ok")  # both free up in the same step
        await waiter.wait()
        await wait_all_tasks_blocked()
        assert a_limit.statistics().in_flight + b_limit.statistics().in_flight == 1
    assert a_limit.statistics().in_flight == b_limit.statistics().in_flight == 0


async def test_p2c_sends_to_the_less_loaded_of_two() -> None:
    a, _, a_handle = limited("a", capacity=10)
    b, _, b_handle = limited("b", capacity=10)
    svc = Balance([a, b])
    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(svc, n)
            await wait_all_tasks_blocked()
        # with two endpoints p2c always compares both: the calls in flight stay level
        assert (a_handle.pending, b_handle.pending) == (5, 5)
        for handle in (a_handle, b_handle):
            for _ in range(5):
                _, responder = await handle.next_request()
                responder.send("ok")


async def test_p2c_sends_fewer_requests_to_a_slower_endpoint() -> None:
    def endpoint(latency: float) -> Probed:
        async def answer(request: Any) -> Any:
            await anyio.sleep(latency)
            return request

        return Probed(service_fn(answer), f"{latency}")

    fast, slow = endpoint(0.1), endpoint(1.0)
    svc = Balance([fast, slow], rng=random.Random(1))
    async with anyio.create_task_group() as tg:
        for n in range(200):
            tg.start_soon(svc, n)
            await anyio.sleep(0.05)
    assert len(fast.requests) > 4 * len(slow.requests)
    assert slow.requests  # probed again as its estimate decays


async def test_a_call_that_hung_until_it_failed_makes_its_endpoint_look_slow() -> None:
    mode = {"a": 0.1, "b": 0.1}

    def endpoint(name: str) -> Probed:
        async def answer(request: Any) -> Any:
            latency = mode[name]
            await anyio.sleep(abs(latency))
            if latency < 0:
                raise ProviderUnavailable(f"{name} failed", retryable=True)
            return name

        return Probed(service_fn(answer), name)

    a, b = endpoint("a"), endpoint("b")
    svc = Balance([a, b], rng=random.Random(3))
    while not (a.requests and b.requests):  # one answer each: both estimates are 0.1 s
        await svc("warm up")
    mode["a"] = -2.0  # a hangs for 2 s, then fails
    while True:
        try:
            await svc("probe")
        except ProviderUnavailable:
            break
    sent_to_a = len(a.requests)
    for _ in range(5):
        assert await svc("next") == "b"
    assert len(a.requests) == sent_to_a
    a_latency = svc.statistics().endpoints[0].latency
    assert a_latency is not None
    assert a_latency > 1.5
    mode["b"] = -0.001  # b fails at once: that must not make it look faster than it was
    before = svc.statistics().endpoints[1].latency
    with pytest.raises(ProviderUnavailable):
        await svc("fast failure")
    after = svc.statistics().endpoints[1].latency
    assert before is not None
    assert after is not None
    assert after >= before * 0.999


async def test_round_robin_takes_the_ready_endpoints_in_turn() -> None:
    services = [Probed(service_fn(echo), name) for name in "abc"]
    svc = Balance(services, choose="round_robin")
    for n in range(6):
        await svc(n)
    assert [s.requests for s in services] == [[0, 3], [1, 4], [2, 5]]


async def test_round_robin_skips_an_endpoint_that_is_not_ready() -> None:
    a, _, a_handle = limited("a")
    services = [a, Probed(service_fn(echo), "b"), Probed(service_fn(echo), "c")]
    svc = Balance(services, choose="round_robin")
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "held")  # a takes it, and stays busy
        await wait_all_tasks_blocked()
        for n in range(4):
            await svc(n)
        _, responder = await a_handle.next_request()
        responder.send("ok")
    assert [s.requests for s in services] == [["held"], [0, 2], [1, 3]]


async def test_an_endpoint_added_at_run_time_serves_a_waiting_request() -> None:
    a, _, a_handle = limited("a")
    svc = Balance([a])
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        await wait_all_tasks_blocked()
        results: list[Any] = []

        async def second() -> None:
            results.append(await svc("second"))

        tg.start_soon(second)
        await wait_all_tasks_blocked()
        b = Probed(service_fn(echo), "b")
        svc.add(b)
        await wait_all_tasks_blocked()
        assert results == ["second"]
        assert b.requests == ["second"]
        _, responder = await a_handle.next_request()
        responder.send("ok")
    assert svc.services == (a, b)


async def test_a_removed_endpoint_gets_no_more_requests() -> None:
    a, b = Probed(service_fn(echo), "a"), Probed(service_fn(echo), "b")
    svc = Balance([a, b])
    svc.remove(a)
    for n in range(10):
        await svc(n)
    assert a.requests == []
    assert len(b.requests) == 10
    with pytest.raises(ValueError, match="not an endpoint"):
        svc.remove(a)


async def test_a_reservation_on_an_endpoint_removed_meanwhile_is_given_back_and_repicked() -> None:
    a, a_limit, _ = limited("a")
    b = Probed(service_fn(echo), "b")
    svc = Balance([a])
    await svc.ready()
    assert a_limit.statistics().in_flight == 1
    svc.add(b)
    svc.remove(a)
    assert await svc.call("x") == "x"
    assert b.requests == ["x"]
    assert a_limit.statistics().in_flight == 0


async def test_an_empty_balance_waits_for_an_endpoint() -> None:
    svc: Balance[Any, Any] = Balance([])
    results: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            results.append(await svc("x"))

        tg.start_soon(call)
        await anyio.sleep(5.0)
        assert results == []
        svc.add(service_fn(echo))
    assert results == ["x"]


async def test_an_endpoint_whose_readiness_fails_is_skipped_and_all_failing_raises() -> None:
    class Broken(Service[Any, Any]):
        @override
        async def ready(self) -> None:
            raise ServiceClosed("this endpoint is closed")

        @override
        async def try_ready(self) -> bool:
            return False

        @override
        async def call(self, request: Any) -> Any:
            raise AssertionError("never called")

    a, _, a_handle = limited("a")
    svc = Balance([Broken(), a])
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        await wait_all_tasks_blocked()
        tg.start_soon(svc, "second")  # waits for a: Broken's failure does not end the wait
        await wait_all_tasks_blocked()
        for _ in range(2):
            _, responder = await a_handle.next_request()
            responder.send("ok")
    with pytest.raises(ServiceClosed, match="closed"):
        await Balance([Broken(), Broken()])("x")


async def test_load_shed_over_a_balance_refuses_when_no_endpoint_is_ready() -> None:
    a, _, a_handle = limited("a")
    svc = LoadShed(Balance([a]))
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        await wait_all_tasks_blocked()
        with pytest.raises(Overloaded):
            await svc("second")
        _, responder = await a_handle.next_request()
        responder.send("ok")


async def test_async_with_enters_every_endpoint() -> None:
    endpoint = ServiceBuilder().buffer(4).service(service_fn(echo))
    svc = Balance([endpoint])
    async with svc:
        assert await svc("x") == "x"
    with pytest.raises(ServiceClosed):
        await svc("y")


async def test_with_breakers_and_a_retry_an_outage_of_one_endpoint_fails_no_request() -> None:
    down = {"b": False}

    def endpoint(name: str) -> Service[Any, Any]:
        async def answer(request: Any) -> Any:
            await anyio.sleep(0.2)
            if down.get(name, False):
                raise ProviderUnavailable(f"{name} down", retryable=True)
            return name

        return ServiceBuilder().circuit_breaker(2, recovery_time=2.0).service(service_fn(answer))

    svc = (
        ServiceBuilder()
        .retry(RetryPolicy(3, backoff=ConstantBackoff(0.05)))
        .service(Balance([endpoint("a"), endpoint("b"), endpoint("c")], rng=random.Random(7)))
    )
    answers: list[str] = []

    async def client(n: int) -> None:
        await anyio.sleep(n * 0.05)
        answers.append(await svc(n))

    async def outage() -> None:
        await anyio.sleep(2.0)
        down["b"] = True
        await anyio.sleep(4.0)
        down["b"] = False

    async with anyio.create_task_group() as tg:
        tg.start_soon(outage)
        for n in range(200):
            tg.start_soon(client, n)
    assert len(answers) == 200  # every request answered: none failed
    assert set(answers) == {"a", "b", "c"}


def test_bad_arguments_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="choose"):
        Balance([], choose="random")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wrap it with service_fn"):
        Balance([echo])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Service endpoints, got int"):
        Balance([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decay"):
        Balance([], decay=0)
    with pytest.raises(TypeError, match="Service endpoints"):
        Balance([]).add("x")  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------


class Recording(Service[Any, Any]):
    """An endpoint whose calls take the latency carried by the request; records its load."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.served = 0

    @override
    async def call(self, request: Any) -> Any:
        latency, fail = request
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(latency)
            if fail:
                raise ProviderUnavailable("drawn failure", retryable=True)
            self.served += 1
            return latency
        finally:
            self.in_flight -= 1


@settings(deadline=None, max_examples=40)
@given(
    clients=st.integers(6, 24),
    latencies=st.lists(st.floats(0.5, 2.0), min_size=60, max_size=120),
    seed=st.integers(0, 2**32 - 1),
)
async def test_random_latencies_spread_the_load_evenly(
    clients: int, latencies: list[float], seed: int
) -> None:
    endpoints = [Recording() for _ in range(3)]
    svc = Balance(endpoints, rng=random.Random(seed))
    work = iter(latencies)
    spreads: list[int] = []

    async def client() -> None:
        for latency in work:
            await svc((latency, False))
            loads = [e.in_flight for e in endpoints]
            spreads.append(max(loads) - min(loads))

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(client)
    served = [e.served for e in endpoints]
    assert sum(served) == len(latencies)
    fair = len(latencies) / 3
    assert all(fair / 2 <= n <= fair * 2 for n in served), served
    assert max(e.peak for e in endpoints) <= 2 * -(-clients // 3) + 1, [e.peak for e in endpoints]


@settings(deadline=None, max_examples=60)
@given(
    capacities=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    calls=st.lists(
        st.tuples(
            st.integers(0, 6),  # arrival time
            st.integers(0, 4),  # latency
            st.sampled_from(["ok", "fail", "cancel", "ready_first", "try_ready"]),
        ),
        min_size=1,
        max_size=16,
    ),
    choose=st.sampled_from(["p2c", "round_robin"]),
    seed=st.integers(0, 2**32 - 1),
)
async def test_no_capacity_is_leaked_whatever_is_cancelled_or_fails(
    capacities: list[int], calls: list[tuple[int, int, str]], choose: Any, seed: int
) -> None:
    recorders = [Recording() for _ in capacities]
    limits = [ConcurrencyLimit(r, c) for r, c in zip(recorders, capacities, strict=True)]
    svc = Balance(limits, choose=choose, rng=random.Random(seed))
    start = anyio.current_time()

    async def client(arrival: int, latency: int, kind: str) -> None:
        await anyio.sleep_until(start + arrival)
        with anyio.move_on_after(2 if kind == "cancel" else 100):
            try:
                if kind == "ready_first":
                    await svc.ready()
                    await anyio.sleep(latency)  # holding the pick
                elif kind == "try_ready" and not await svc.try_ready():
                    return
                await svc.call((latency, kind == "fail"))
            except ProviderUnavailable:
                pass
        for recorder, limit in zip(recorders, limits, strict=True):
            assert recorder.in_flight <= limit.statistics().max_in_flight

    async with anyio.create_task_group() as tg:
        for arrival, latency, kind in calls:
            tg.start_soon(client, arrival, latency, kind)
    await wait_all_tasks_blocked()
    for limit in limits:
        stats = limit.statistics()
        assert (stats.in_flight, stats.waiting) == (0, 0), stats
