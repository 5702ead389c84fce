from __future__ import annotations

import math
import random
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import Elapsed, RetryLayer, RetryPolicy, ServiceBuilder, service_fn
from towerpy.retry import ConstantBackoff, ExponentialBackoff, Retry, RetryBudget
from towerpy.testing import mock_service, wait_all_tasks_blocked

from ..reference import ReferenceLimit, held

pytestmark = pytest.mark.anyio


class Flaky:
    """An inner service body that fails a given number of times, then echoes."""

    def __init__(self, failures: int, error: type[Exception] | Exception = ValueError) -> None:
        self.failures = failures
        self.error = error
        self.attempts: list[tuple[float, Any]] = []

    async def __call__(self, request: Any) -> Any:
        self.attempts.append((anyio.current_time(), request))
        if len(self.attempts) <= self.failures:
            error = self.error
            raise error if isinstance(error, Exception) else error(len(self.attempts))
        return request


def retrying(body: Flaky, policy: RetryPolicy) -> Retry[Any, Any]:
    return RetryLayer(policy).layer(service_fn(body))


async def test_a_call_that_succeeds_at_once_is_tried_once() -> None:
    body = Flaky(0)
    assert await retrying(body, RetryPolicy())("hi") == "hi"
    assert len(body.attempts) == 1


async def test_a_failed_call_is_retried_after_each_wait_until_it_succeeds() -> None:
    body = Flaky(2)
    start = anyio.current_time()
    svc = retrying(body, RetryPolicy(max_attempts=3, backoff=ConstantBackoff(0.5)))
    assert await svc("hi") == "hi"
    assert [t - start for t, _ in body.attempts] == [0.0, 0.5, 1.0]


async def test_gives_up_after_max_attempts_and_raises_the_last_error_unchanged() -> None:
    errors = [ValueError("first"), ValueError("second"), ValueError("third")]
    attempts = 0

    async def failing(_: object) -> None:
        nonlocal attempts
        attempts += 1
        raise errors[attempts - 1]

    svc = RetryLayer(RetryPolicy(max_attempts=3, backoff=ConstantBackoff(0))).layer(
        service_fn(failing)
    )
    with pytest.raises(ValueError, match="third") as info:
        await svc(None)
    assert info.value is errors[2]
    assert info.value.__notes__ == ["towerpy: RetryLayer gave up after 3 attempts"]
    assert attempts == 3


async def test_backoff_waits_are_exact_with_a_fixed_seed() -> None:
    body = Flaky(4)
    policy = RetryPolicy(
        max_attempts=5, backoff=ExponentialBackoff(base=1.0, factor=2.0, rng=random.Random(11))
    )
    start = anyio.current_time()
    assert await retrying(body, policy)("x") == "x"
    draws = random.Random(11)
    expected = [start]
    for cap in (1.0, 2.0, 4.0, 8.0):
        expected.append(expected[-1] + draws.uniform(0.0, cap))
    assert [t for t, _ in body.attempts] == expected


async def test_retry_after_on_the_error_sets_a_floor_on_the_wait() -> None:
    class Throttled(Exception):
        retry_after = 3.0

    body = Flaky(1, Throttled)
    start = anyio.current_time()
    await retrying(body, RetryPolicy(backoff=ConstantBackoff(0.5)))("x")
    assert [t - start for t, _ in body.attempts] == [0.0, 3.0]


async def test_retry_after_shorter_than_the_backoff_changes_nothing() -> None:
    class Throttled(Exception):
        retry_after = 0.1

    body = Flaky(1, Throttled)
    start = anyio.current_time()
    await retrying(body, RetryPolicy(backoff=ConstantBackoff(0.5)))("x")
    assert [t - start for t, _ in body.attempts] == [0.0, 0.5]


async def test_a_retry_after_past_max_retry_after_raises_at_once_instead_of_waiting() -> None:
    class QuotaSpent(Exception):
        retry_after = 86_400.0

    body = Flaky(1, QuotaSpent)
    start = anyio.current_time()
    policy = RetryPolicy(backoff=ConstantBackoff(0.5), max_retry_after=60)
    with pytest.raises(QuotaSpent) as caught:
        await retrying(body, policy)("x")
    assert anyio.current_time() == start
    assert len(body.attempts) == 1
    assert any("max_retry_after=60s" in note for note in caught.value.__notes__)


async def test_an_error_asking_never_to_be_retried_propagates_at_once() -> None:
    class ServiceGone(Exception):
        retry_after = math.inf

    body = Flaky(1, ServiceGone)
    start = anyio.current_time()
    with pytest.raises(ServiceGone) as caught:
        await retrying(body, RetryPolicy(backoff=ConstantBackoff(0.5)))("x")
    assert anyio.current_time() == start
    assert len(body.attempts) == 1
    assert caught.value.__notes__ == [
        "towerpy: not retried: the error asks never to be retried (retry_after=inf)",
        "towerpy: RetryLayer gave up after 1 attempt",
    ]


async def test_one_error_object_raised_by_every_call_keeps_one_note_of_each() -> None:
    down = ConnectionError("service down")  # cached, and raised by every call
    down.add_note("the cache's own note")
    body = Flaky(1000, down)
    policy = RetryPolicy(max_attempts=3, backoff=ConstantBackoff(0.5))
    svc = retrying(body, policy)
    for _ in range(4):
        with pytest.raises(ConnectionError) as caught:
            await svc("x")
        assert caught.value is down
        assert down.__notes__ == [
            "the cache's own note",
            "towerpy: RetryLayer gave up after 3 attempts",
        ]
    assert len(body.attempts) == 12
    # the notes say why this call gave up, not why an earlier one did
    stingy = retrying(body, RetryPolicy(budget=RetryBudget(min_per_second=0, retry_ratio=0)))
    with pytest.raises(ConnectionError):
        await stingy("x")
    assert down.__notes__ == [
        "the cache's own note",
        "towerpy: RetryLayer gave up after 3 attempts",  # the other layer's
        "towerpy: the retry budget is spent, so this error was not retried",
        "towerpy: RetryLayer gave up after 1 attempt",
    ]
    with pytest.raises(ConnectionError):
        await svc("x")
    assert down.__notes__ == [
        "the cache's own note",
        "towerpy: the retry budget is spent, so this error was not retried",
        "towerpy: RetryLayer gave up after 1 attempt",
        "towerpy: RetryLayer gave up after 3 attempts",
    ]


async def test_errors_that_are_not_retryable_propagate_at_once() -> None:
    error = KeyError("nope")
    body = Flaky(5, error)
    svc = retrying(body, RetryPolicy(retry_on=(ConnectionError,)))
    with pytest.raises(KeyError) as info:
        await svc("x")
    assert info.value is error
    assert len(body.attempts) == 1
    assert info.value.__notes__ == ["towerpy: RetryLayer gave up after 1 attempt"]


async def test_a_spent_budget_stops_retries_and_they_resume_as_the_window_moves() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=0.1, retry_ratio=0)  # one retry per 10 s
    attempts = 0

    async def always_fails(_: object) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    svc = RetryLayer(RetryPolicy(max_attempts=3, budget=budget, backoff=ConstantBackoff(0))).layer(
        service_fn(always_fails)
    )
    start = anyio.current_time()

    async def attempts_of_one_call() -> int:
        nonlocal attempts
        attempts = 0
        with pytest.raises(ConnectionError):
            await svc(None)
        return attempts

    assert await attempts_of_one_call() == 2  # one retry, then the budget is spent
    await anyio.sleep_until(start + 5.0)
    assert await attempts_of_one_call() == 1
    await anyio.sleep_until(start + 9.999)
    assert await attempts_of_one_call() == 1
    await anyio.sleep_until(start + 10.0)  # the retry at `start` left the window
    assert await attempts_of_one_call() == 2


async def test_every_call_deposits_into_the_budget() -> None:
    budget = RetryBudget(min_per_second=0, retry_ratio=0.5)
    svc = RetryLayer(RetryPolicy(budget=budget)).layer(service_fn(Flaky(0)))
    for n in range(4):
        await svc(n)
    assert budget.available() == 2


async def test_a_budget_with_no_floor_and_no_ratio_never_retries() -> None:
    body = Flaky(1)
    budget = RetryBudget(min_per_second=0, retry_ratio=0)
    with pytest.raises(ValueError, match="1") as info:
        await retrying(body, RetryPolicy(max_attempts=5, budget=budget))("x")
    assert len(body.attempts) == 1
    assert "towerpy: the retry budget is spent, so this error was not retried" in (
        info.value.__notes__
    )


async def test_cancellation_during_the_wait_stops_retrying() -> None:
    body = Flaky(5)
    svc = retrying(body, RetryPolicy(backoff=ConstantBackoff(10.0)))
    start = anyio.current_time()
    with anyio.move_on_after(4.0) as scope:
        await svc("x")
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 4.0
    assert len(body.attempts) == 1


class RecordingPolicy(RetryPolicy):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[Any, BaseException, int]] = []
        self.clones: list[Any] = []

    def retry(self, request: Any, error: BaseException, attempt: int) -> float | None:
        self.seen.append((request, error, attempt))
        return super().retry(request, error, attempt)

    def clone_request(self, request: Any) -> Any:
        self.clones.append(request)
        return (request, len(self.clones))


async def test_cancellation_is_never_retried_and_never_shown_to_the_policy() -> None:
    inner, handle = mock_service()
    policy = RecordingPolicy(retry_on=(BaseException,), backoff=ConstantBackoff(0))
    svc = RetryLayer(policy).layer(inner)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc, "x")
            _, responder = await handle.next_request()
            scope.cancel()
    assert responder.cancelled
    assert policy.seen == []
    assert handle.pending == 0


async def test_an_error_raised_while_the_caller_is_being_cancelled_is_not_retried() -> None:
    started = anyio.Event()

    async def converts_cancellation(_: object) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            raise RuntimeError("cleanup failed")  # what a careless service does

    policy = RecordingPolicy(backoff=ConstantBackoff(0))
    svc = RetryLayer(policy).layer(service_fn(converts_cancellation))
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc, "x")
            await started.wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert policy.seen == []


async def test_clone_request_is_called_once_per_attempt_and_the_policy_sees_the_original() -> None:
    body = Flaky(2)
    policy = RecordingPolicy(max_attempts=3, backoff=ConstantBackoff(0))
    assert await retrying(body, policy)("req") == ("req", 3)
    assert policy.clones == ["req", "req", "req"]
    assert [request for _, request in body.attempts] == [("req", 1), ("req", 2), ("req", 3)]
    assert [(request, attempt) for request, _, attempt in policy.seen] == [("req", 1), ("req", 2)]


async def test_a_reservation_made_by_ready_serves_the_first_try() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)
    svc = RetryLayer(RetryPolicy(backoff=ConstantBackoff(1.0))).layer(limit)
    in_use: list[int] = []

    async def answer() -> None:
        _, responder = await handle.next_request()
        in_use.append(limit.in_use)  # the first try used the reservation, took nothing more
        responder.fail(ConnectionError())
        await wait_all_tasks_blocked()
        in_use.append(limit.in_use)  # nothing is held during the wait
        _, responder = await handle.next_request()
        in_use.append(limit.in_use)
        responder.send("ok")

    await svc.ready()
    assert held(limit)
    assert limit.in_use == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        assert await svc.call("x") == "ok"
    assert in_use == [1, 0, 1]
    assert limit.in_use == 0
    assert not held(limit)


async def test_a_policy_returning_a_negative_wait_is_reported() -> None:
    class Broken(RetryPolicy):
        def retry(self, request: Any, error: BaseException, attempt: int) -> float | None:
            return -1.0

    with pytest.raises(ValueError, match="retry\\(\\) must return seconds >= 0") as info:
        await retrying(Flaky(1), Broken())("x")
    assert isinstance(info.value.__cause__, ValueError)


async def test_a_policy_returning_something_else_than_seconds_is_reported() -> None:
    class Broken(RetryPolicy):
        def retry(self, request: Any, error: BaseException, attempt: int) -> Any:
            return "soon"

    with pytest.raises(TypeError, match="got str"):
        await retrying(Flaky(1), Broken())("x")


async def test_an_error_in_the_policy_shows_the_failure_it_was_deciding_on() -> None:
    def predicate(exc: BaseException) -> bool:
        raise RuntimeError("bug in the predicate")

    body = Flaky(1)
    with pytest.raises(RuntimeError, match="bug in the predicate") as info:
        await retrying(body, RetryPolicy(retry_on=predicate))("x")
    assert isinstance(info.value.__context__, ValueError)
    assert len(body.attempts) == 1


async def test_a_custom_policy_needs_only_the_two_methods() -> None:
    class EveryOther:
        def retry(self, request: Any, error: BaseException, attempt: int) -> float | None:
            return 0.25 if attempt < 4 else None

        def clone_request(self, request: Any) -> Any:
            return request

    body = Flaky(3)
    start = anyio.current_time()
    assert await RetryLayer(EveryOther()).layer(service_fn(body))("x") == "x"
    assert [t - start for t, _ in body.attempts] == [0.0, 0.25, 0.5, 0.75]


def test_the_layer_refuses_what_is_not_a_policy() -> None:
    with pytest.raises(TypeError, match="create one first"):
        RetryLayer(RetryPolicy)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry\\(\\)"):
        RetryLayer(object())  # type: ignore[arg-type]


def test_the_layer_refuses_an_async_retry_method() -> None:
    class AsyncPolicy:
        async def retry(self, request: Any, error: BaseException, attempt: int) -> float | None:
            return None

        def clone_request(self, request: Any) -> Any:
            return request

    with pytest.raises(TypeError, match="plain method"):
        RetryLayer(AsyncPolicy())  # type: ignore[arg-type]


async def test_builder_retry_is_the_retry_layer() -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(0))
    body = Flaky(1)
    svc = ServiceBuilder().retry(policy).service(service_fn(body))
    assert isinstance(svc, Retry)
    assert svc.policy is policy
    assert await svc("x") == "x"
    assert len(body.attempts) == 2


# --- random failures, latencies and cancellations -------------------------------------------

attempt_plan = st.tuples(
    st.integers(0, 3),  # how long the try takes
    st.sampled_from(["ok", "retryable", "fatal"]),
)


@settings(deadline=None, max_examples=100)
@given(
    limit=st.integers(1, 2),
    max_attempts=st.integers(1, 4),
    delay=st.integers(0, 2),
    callers=st.lists(
        st.tuples(
            st.none() | st.integers(0, 8),  # the caller gives up after this long, or never
            st.lists(attempt_plan, min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=5,
    ),
)
async def test_random_failures_and_cancellations_follow_the_policy_and_leak_nothing(
    limit: int,
    max_attempts: int,
    delay: int,
    callers: list[tuple[int | None, list[tuple[int, str]]]],
) -> None:
    tries: dict[int, int] = {}

    class Fatal(Exception):
        pass

    async def work(request: int) -> int:
        attempt = tries[request] = tries.get(request, 0) + 1
        plan = callers[request][1]
        duration, kind = plan[min(attempt, len(plan)) - 1]
        assert inner.in_use <= limit
        await anyio.sleep(duration)
        if kind == "retryable":
            raise ConnectionError(request)
        if kind == "fatal":
            raise Fatal(request)
        return request

    inner = ReferenceLimit(service_fn(work), limit)
    seen: list[BaseException] = []

    class SeeingPolicy(RetryPolicy):
        def retry(self, request: Any, error: BaseException, attempt: int) -> float | None:
            seen.append(error)
            return super().retry(request, error, attempt)

    policy = SeeingPolicy(
        max_attempts=max_attempts, retry_on=(ConnectionError,), backoff=ConstantBackoff(delay)
    )
    svc = RetryLayer(policy).layer(inner)
    outcomes: dict[int, str] = {}

    async def caller(n: int, patience: int | None) -> None:
        with anyio.CancelScope() as scope:
            if patience is not None:
                scope.deadline = anyio.current_time() + patience
            try:
                assert await svc(n) == n
                outcomes[n] = "ok"
            except ConnectionError:
                outcomes[n] = "gave up"
            except Fatal:
                outcomes[n] = "fatal"
        if scope.cancelled_caught:
            outcomes[n] = "left"

    async with anyio.create_task_group() as tg:
        for n, (patience, _) in enumerate(callers):
            tg.start_soon(caller, n, patience)

    assert inner.in_use == 0
    for error in seen:
        assert isinstance(error, Exception)  # never a cancellation
    for n, outcome in outcomes.items():
        made = tries.get(n, 0)
        assert made <= max_attempts
        plan = callers[n][1]
        kinds = [plan[min(a, len(plan)) - 1][1] for a in range(1, made + 1)]
        if outcome == "ok":
            assert kinds[-1] == "ok"
            assert all(kind == "retryable" for kind in kinds[:-1])
        elif outcome == "fatal":
            assert kinds[-1] == "fatal"  # not retried
        elif outcome == "gave up":
            assert made == max_attempts
            assert set(kinds) == {"retryable"}
        else:
            assert callers[n][0] is not None
    assert outcomes.keys() == set(range(len(callers)))


async def test_retry_outside_a_timeout_retries_each_timed_out_attempt() -> None:
    starts: list[float] = []

    async def slow_twice(request: str) -> str:
        starts.append(anyio.current_time())
        if len(starts) < 3:
            await anyio.sleep(10.0)
        return request

    svc = (
        ServiceBuilder()
        .retry(RetryPolicy(max_attempts=3, backoff=ConstantBackoff(0.5)))
        .timeout(1.0)
        .service(service_fn(slow_twice))
    )
    start = anyio.current_time()
    assert await svc("x") == "x"
    assert [t - start for t in starts] == [0.0, 1.5, 3.0]


async def test_when_every_attempt_times_out_the_last_elapsed_propagates() -> None:
    starts: list[float] = []

    async def hangs(_: object) -> None:
        starts.append(anyio.current_time())
        await anyio.sleep_forever()

    svc = (
        ServiceBuilder()
        .retry(RetryPolicy(max_attempts=3, backoff=ConstantBackoff(0.5)))
        .timeout(1.0)
        .service(service_fn(hangs))
    )
    start = anyio.current_time()
    with pytest.raises(Elapsed) as info:
        await svc("x")
    assert anyio.current_time() - start == 4.0
    assert [t - start for t in starts] == [0.0, 1.5, 3.0]
    assert info.value.__notes__ == ["towerpy: RetryLayer gave up after 3 attempts"]


async def test_a_timeout_outside_the_retry_bounds_the_tries_and_the_waits() -> None:
    starts: list[float] = []

    async def fails(_: object) -> None:
        starts.append(anyio.current_time())
        raise ConnectionError("refused")

    svc = (
        ServiceBuilder()
        .timeout(2.5)
        .retry(RetryPolicy(max_attempts=10, backoff=ConstantBackoff(1.0)))
        .service(service_fn(fails))
    )
    start = anyio.current_time()
    with pytest.raises(Elapsed):
        await svc("x")
    assert anyio.current_time() - start == 2.5
    assert [t - start for t in starts] == [0.0, 1.0, 2.0]
