"""The circuit breaker: every transition of its state, in virtual time, on both backends."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import anyio
import pytest

from towerpy import (
    Circuit,
    CircuitBreaker,
    CircuitBreakerLayer,
    CircuitOpen,
    ConcurrencyLimit,
    ConstantBackoff,
    Elapsed,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RetryPolicy,
    ServiceBuilder,
    service_fn,
)
from towerpy.resilience._routing import waiting_for_admission
from towerpy.testing import mock_service, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


class Flaky:
    """An async function that fails with ``error`` while ``failing`` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.failing = True
        self.error = error or ProviderUnavailable("down", status_code=503, retryable=True)
        self.calls = 0

    async def __call__(self, request: Any) -> Any:
        self.calls += 1
        if self.failing:
            raise self.error
        return request


def state(breaker: CircuitBreaker) -> str:
    return breaker.state  # a str: mypy must not narrow the state across awaits


async def quietly(svc: Any, request: Any) -> None:
    with contextlib.suppress(Exception):
        await svc(request)


async def fail_times(svc: Any, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ProviderUnavailable):
            await svc("x")


async def test_the_circuit_opens_after_the_threshold_of_failures_in_a_row() -> None:
    flaky = Flaky()
    svc = Circuit(service_fn(flaky), CircuitBreaker(3, recovery_time=10.0))
    await fail_times(svc, 2)
    assert state(svc.breaker) == "closed"
    await fail_times(svc, 1)
    assert state(svc.breaker) == "open"
    with pytest.raises(CircuitOpen, match="3 failures in a row") as caught:
        await svc("x")
    assert flaky.calls == 3  # refused without calling the inner service
    assert isinstance(caught.value, Overloaded)
    assert caught.value.retry_after == 10.0
    assert not await svc.try_ready()


async def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    flaky = Flaky()
    svc = Circuit(service_fn(flaky), CircuitBreaker(3))
    await fail_times(svc, 2)
    flaky.failing = False
    assert await svc("ok") == "ok"
    assert svc.statistics().consecutive_failures == 0
    flaky.failing = True
    await fail_times(svc, 2)
    assert state(svc.breaker) == "closed"  # 2, 1 success, 2: never 3 in a row


async def test_while_open_retry_after_counts_down_and_ready_returns_at_once() -> None:
    svc = Circuit(service_fn(Flaky()), CircuitBreaker(1, recovery_time=10.0))
    await fail_times(svc, 1)
    await anyio.sleep(4.0)
    start = anyio.current_time()
    await svc.ready()  # the call will be refused: no waiting for the recovery
    assert anyio.current_time() == start
    with pytest.raises(CircuitOpen) as caught:
        await svc.call("x")
    assert caught.value.retry_after == pytest.approx(6.0)
    assert svc.statistics().retry_after == pytest.approx(6.0)


async def test_an_open_circuit_gives_back_what_ready_reserved_below_before_refusing() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    breaker = CircuitBreaker(1, recovery_time=10.0)
    svc = Circuit(limit, breaker)
    await svc.ready()  # closed: reserves the limit's only permit
    assert limit.statistics().in_flight == 1
    breaker.trip()
    with pytest.raises(CircuitOpen):
        await svc.call("x")
    assert limit.statistics().in_flight == 0  # at once, not when this task ends
    assert handle.pending == 0


async def test_try_ready_on_an_open_circuit_is_false_and_holds_nothing_below() -> None:
    inner, _ = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    breaker = CircuitBreaker(1, recovery_time=10.0)
    svc = Circuit(limit, breaker)
    assert await svc.try_ready()  # closed: the limit's permit is reserved
    assert limit.statistics().in_flight == 1
    breaker.trip()
    assert not await svc.try_ready()
    assert limit.statistics().in_flight == 0


async def test_after_the_recovery_time_probes_go_through_and_a_success_closes() -> None:
    flaky = Flaky()
    svc = Circuit(service_fn(flaky), CircuitBreaker(2, recovery_time=5.0))
    await fail_times(svc, 2)
    await anyio.sleep(5.0)
    assert state(svc.breaker) == "half_open"
    flaky.failing = False
    assert await svc("probe") == "probe"
    assert state(svc.breaker) == "closed"
    stats = svc.statistics()
    assert (stats.opened, stats.failures, stats.successes) == (1, 2, 1)


async def test_a_failed_probe_opens_the_circuit_again_for_a_whole_recovery_time() -> None:
    flaky = Flaky()
    svc = Circuit(service_fn(flaky), CircuitBreaker(2, recovery_time=5.0))
    await fail_times(svc, 2)
    await anyio.sleep(5.0)
    await fail_times(svc, 1)  # one failed probe is enough
    assert state(svc.breaker) == "open"
    assert svc.statistics().retry_after == 5.0
    assert svc.statistics().opened == 2
    await anyio.sleep(4.9)
    assert state(svc.breaker) == "open"
    await anyio.sleep(0.1)
    assert state(svc.breaker) == "half_open"


async def test_half_open_lets_exactly_half_open_calls_probes_through_at_once() -> None:
    inner, handle = mock_service()
    breaker = CircuitBreaker(1, recovery_time=1.0, half_open_calls=2)
    svc = Circuit(inner, breaker)
    breaker.trip()
    await anyio.sleep(1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "probe 1")
        tg.start_soon(svc, "probe 2")
        await wait_all_tasks_blocked()
        assert handle.pending == 2
        assert not await svc.try_ready()
        with pytest.raises(CircuitOpen, match="probe call") as caught:
            await svc("third")
        assert caught.value.retry_after == 0.0
        assert breaker.statistics().probes_in_flight == 2
        for _ in range(2):
            _, responder = await handle.next_request()
            responder.send("ok")
    assert state(breaker) == "closed"
    assert handle.pending == 0


async def test_a_cancelled_probe_gives_its_permit_to_the_next_call() -> None:
    inner, handle = mock_service()
    breaker = CircuitBreaker(1, recovery_time=1.0)
    svc = Circuit(inner, breaker)
    breaker.trip()
    await anyio.sleep(1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "probe")
        await handle.next_request()
        tg.cancel_scope.cancel()
    assert state(breaker) == "half_open"
    assert breaker.statistics().probes_in_flight == 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "next probe")
        _, responder = await handle.next_request()
        responder.send("ok")
    assert state(breaker) == "closed"


async def test_ready_reserves_a_probe_permit_that_a_dropped_reservation_gives_back() -> None:
    breaker = CircuitBreaker(1, recovery_time=1.0)
    svc = Circuit(service_fn(Flaky()), breaker)
    breaker.trip()
    await anyio.sleep(1.0)
    await svc.ready()
    assert breaker.statistics().probes_in_flight == 1
    svc.drop_reservation()
    assert breaker.statistics().probes_in_flight == 0


async def test_errors_the_breaker_does_not_count_neither_open_nor_reset_it() -> None:
    bad_request = ProviderError("HTTP 400", status_code=400, retryable=False)
    flaky = Flaky()
    svc = Circuit(service_fn(flaky), CircuitBreaker(2))
    await fail_times(svc, 1)
    flaky.error = bad_request
    for _ in range(5):
        with pytest.raises(ProviderError):
            await svc("x")
    assert svc.statistics().consecutive_failures == 1  # not reset by the 400s
    assert state(svc.breaker) == "closed"
    flaky.error = ProviderUnavailable("down", retryable=True)
    await fail_times(svc, 1)
    assert state(svc.breaker) == "open"


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("429", status_code=429, retryable=True),
        RateLimited("quota", status_code=429, retryable=False),  # insufficient_quota
        ProviderUnavailable("503", status_code=503, retryable=True),
        ProviderError("408", status_code=408, retryable=True),
        Elapsed("timed out"),
        ConnectionError("reset"),
    ],
    ids=repr,
)
async def test_the_default_failures_are_the_ones_that_say_the_service_is_failing(
    error: Exception,
) -> None:
    flaky = Flaky(error)
    svc = Circuit(service_fn(flaky), CircuitBreaker(1))
    with pytest.raises(type(error)):
        await svc("x")
    assert state(svc.breaker) == "open"


@pytest.mark.parametrize(
    "error",
    [ProviderError("400", status_code=400), ValueError("bad"), Overloaded("shed")],
    ids=repr,
)
async def test_request_errors_and_shed_load_are_not_failures_by_default(error: Exception) -> None:
    svc = Circuit(service_fn(Flaky(error)), CircuitBreaker(1))
    for _ in range(3):
        with pytest.raises(type(error)):
            await svc("x")
    assert state(svc.breaker) == "closed"
    assert svc.statistics().failures == 0


async def test_the_callers_cancellation_is_never_a_failure() -> None:
    inner, handle = mock_service()
    svc = Circuit(inner, CircuitBreaker(1))
    for _ in range(3):
        with anyio.move_on_after(1.0):
            await svc("x")
    assert state(svc.breaker) == "closed"
    assert handle.pending == 3


async def test_a_longer_retry_after_of_the_failing_error_keeps_the_circuit_open_longer() -> None:
    limited = RateLimited("429", status_code=429, retry_after=60.0, retryable=True)
    svc = Circuit(service_fn(Flaky(limited)), CircuitBreaker(1, recovery_time=5.0))
    with pytest.raises(RateLimited):
        await svc("x")
    assert svc.statistics().retry_after == 60.0
    await anyio.sleep(59.0)
    assert state(svc.breaker) == "open"
    await anyio.sleep(1.0)
    assert state(svc.breaker) == "half_open"


async def test_failure_on_takes_exception_classes_or_a_predicate() -> None:
    by_class = Circuit(service_fn(Flaky(KeyError("k"))), CircuitBreaker(1, failure_on=KeyError))
    with pytest.raises(KeyError):
        await by_class("x")
    assert state(by_class.breaker) == "open"
    seen: list[BaseException] = []

    def predicate(error: BaseException) -> bool:
        seen.append(error)
        return isinstance(error, ValueError) and "fatal" in str(error)

    breaker = CircuitBreaker(1, failure_on=predicate)
    flaky = Flaky(ValueError("minor"))
    svc = Circuit(service_fn(flaky), breaker)
    with pytest.raises(ValueError, match="minor"):
        await svc("x")
    assert state(breaker) == "closed"
    flaky.error = ValueError("fatal")
    with pytest.raises(ValueError, match="fatal"):
        await svc("x")
    assert state(breaker) == "open"
    assert [str(e) for e in seen] == ["minor", "fatal"]


async def test_calls_that_started_before_the_circuit_changed_do_not_change_it_again() -> None:
    inner, handle = mock_service()
    breaker = CircuitBreaker(1, recovery_time=1.0)
    svc = Circuit(inner, breaker)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "slow")
        _, slow = await handle.next_request()
        breaker.trip()
        await anyio.sleep(1.0)
        tg.start_soon(quietly, svc, "probe")
        _, probe = await handle.next_request()
        probe.fail(ProviderUnavailable("still down", retryable=True))
        await wait_all_tasks_blocked()
        assert state(breaker) == "open"
        slow.send("ok")  # admitted while closed, long ago: its success closes nothing
    assert state(breaker) == "open"


async def test_one_breaker_passed_to_several_layers_is_one_circuit() -> None:
    breaker = CircuitBreaker(2, recovery_time=10.0)
    layer = CircuitBreakerLayer(breaker=breaker)
    flaky_a, flaky_b = Flaky(), Flaky()
    a = layer.layer(service_fn(flaky_a))
    b = ServiceBuilder().circuit_breaker(breaker=breaker).service(service_fn(flaky_b))
    await fail_times(a, 1)
    await fail_times(b, 1)
    with pytest.raises(CircuitOpen):
        await a("x")
    with pytest.raises(CircuitOpen):
        await b("x")
    assert a.statistics() == breaker.statistics()
    assert breaker.statistics().rejected == 2


async def test_each_service_of_a_layer_with_settings_gets_a_breaker_of_its_own() -> None:
    layer = CircuitBreakerLayer(1)
    a = layer.layer(service_fn(Flaky()))
    b = layer.layer(service_fn(Flaky()))
    await fail_times(a, 1)
    assert state(a.breaker) == "open"
    assert state(b.breaker) == "closed"
    assert a.breaker is not b.breaker


async def test_trip_and_reset_open_and_close_the_circuit_by_hand() -> None:
    flaky = Flaky()
    flaky.failing = False
    breaker = CircuitBreaker(5, recovery_time=30.0)
    svc = Circuit(service_fn(flaky), breaker)
    breaker.trip()
    with pytest.raises(CircuitOpen, match="tripped by hand"):
        await svc("x")
    breaker.reset()
    assert await svc("x") == "x"


async def test_a_router_waiting_for_admission_waits_until_the_circuit_lets_a_probe_through() -> (
    None
):
    breaker = CircuitBreaker(1, recovery_time=7.0)
    flaky = Flaky()
    svc = Circuit(service_fn(flaky), breaker)
    await fail_times(svc, 1)
    ready_at: list[float] = []

    async def router() -> None:
        waiting_for_admission()
        await svc.ready()
        ready_at.append(anyio.current_time())
        svc.drop_reservation()

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(router)
    assert ready_at == [start + 7.0]
    assert breaker.statistics().probes_in_flight == 0


async def test_a_router_waiting_for_a_probe_permit_is_woken_when_the_circuit_closes() -> None:
    inner, handle = mock_service()
    breaker = CircuitBreaker(1, recovery_time=1.0)
    svc = Circuit(inner, breaker)
    breaker.trip()
    await anyio.sleep(1.0)
    woken: list[str] = []

    async def router() -> None:
        waiting_for_admission()
        await svc.ready()
        woken.append(state(breaker))

    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "probe")
        _, probe = await handle.next_request()
        tg.start_soon(router)
        await wait_all_tasks_blocked()
        assert woken == []  # the only probe permit is taken
        probe.send("ok")
    assert woken == ["closed"]


async def test_retry_outside_the_breaker_waits_out_the_recovery_and_succeeds() -> None:
    flaky = Flaky()
    svc = (
        ServiceBuilder()
        .retry(RetryPolicy(10, backoff=ConstantBackoff(0.1)))
        .circuit_breaker(2, recovery_time=5.0)
        .service(service_fn(flaky))
    )
    start = anyio.current_time()

    async def heal() -> None:
        await anyio.sleep(3.0)
        flaky.failing = False

    async with anyio.create_task_group() as tg:
        tg.start_soon(heal)
        assert await svc("x") == "x"
    # two failures open it at once; the next try honours CircuitOpen.retry_after (5 s), then
    # the probe succeeds: no call was sent while the circuit was open
    assert anyio.current_time() - start == pytest.approx(5.1)
    assert flaky.calls == 3


async def test_retry_inside_the_breaker_counts_one_failure_per_call_not_per_attempt() -> None:
    flaky = Flaky()
    svc = (
        ServiceBuilder()
        .circuit_breaker(2)
        .retry(RetryPolicy(3, backoff=ConstantBackoff(0)))
        .service(service_fn(flaky))
    )
    await fail_times(svc, 1)
    assert flaky.calls == 3
    breaker = svc.breaker  # type: ignore[attr-defined]
    assert breaker.statistics().consecutive_failures == 1
    await fail_times(svc, 1)
    assert state(breaker) == "open"


async def test_load_shedding_below_the_breaker_never_opens_it() -> None:
    inner, handle = mock_service()
    svc = ServiceBuilder().circuit_breaker(1).load_shed().concurrency_limit(1).service(inner)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "first")
        _, first = await handle.next_request()
        for _ in range(3):
            with pytest.raises(Overloaded):
                await svc("shed")
        first.send("ok")
    assert state(svc.breaker) == "closed"  # type: ignore[attr-defined]


async def test_under_load_shedding_an_open_circuit_refuses_with_circuit_open() -> None:
    flaky = Flaky()
    svc = ServiceBuilder().load_shed().circuit_breaker(1, recovery_time=3.0)
    built = svc.service(service_fn(flaky))
    await fail_times(built, 1)
    with pytest.raises(CircuitOpen) as caught:
        await built("x")
    assert caught.value.retry_after == 3.0
    shed_over_limit = (
        ServiceBuilder()
        .load_shed()
        .circuit_breaker(1)
        .concurrency_limit(1)
        .service(service_fn(flaky))
    )
    await fail_times(shed_over_limit, 1)
    with pytest.raises(CircuitOpen):
        await shed_over_limit("x")
    assert flaky.calls == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold"),
        ({"recovery_time": -1}, ValueError, "recovery_time"),
        ({"recovery_time": math.nan}, ValueError, "recovery_time"),
        ({"half_open_calls": 0}, ValueError, "half_open_calls"),
        ({"failure_on": (ValueError, "oops")}, TypeError, "failure_on must hold exception"),
        ({"failure_on": int}, TypeError, "failure_on must be an exception class"),
        ({"failure_on": 42}, TypeError, "failure_on must be an exception class"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        CircuitBreaker(**kwargs)
    with pytest.raises(error, match=match):
        CircuitBreakerLayer(**kwargs)
    with pytest.raises(error, match=match):
        ServiceBuilder().circuit_breaker(**kwargs)


def test_an_async_failure_on_predicate_is_refused() -> None:
    async def predicate(error: BaseException) -> bool:
        return True

    with pytest.raises(TypeError, match="plain function"):
        CircuitBreaker(failure_on=predicate)  # type: ignore[arg-type]


def test_settings_and_a_shared_breaker_are_refused_together() -> None:
    with pytest.raises(ValueError, match="not both"):
        CircuitBreakerLayer(3, breaker=CircuitBreaker())
    with pytest.raises(TypeError, match="must be a CircuitBreaker"):
        CircuitBreakerLayer(breaker=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a CircuitBreaker"):
        Circuit(service_fn(Flaky()), object())  # type: ignore[arg-type]


def test_repr_names_the_settings_and_the_state() -> None:
    assert repr(CircuitBreakerLayer(3, 2.0)) == "CircuitBreakerLayer(3, 2.0, half_open_calls=1)"
    assert "state='closed'" in repr(CircuitBreaker())
