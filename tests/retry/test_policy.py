from __future__ import annotations

import math
import random
from typing import Any

import anyio
import pytest

from towerpy.errors import RateLimited
from towerpy.retry import (
    ConstantBackoff,
    ExponentialBackoff,
    Policy,
    RetryBudget,
    RetryPolicy,
)


class Throttled(Exception):
    def __init__(self, retry_after: object) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


def test_retries_until_max_attempts_tries_were_made() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=ConstantBackoff(0.5))
    error = ValueError("x")
    assert policy.retry("req", error, 1) == 0.5
    assert policy.retry("req", error, 2) == 0.5
    assert policy.retry("req", error, 3) is None


def test_max_attempts_one_never_retries() -> None:
    assert RetryPolicy(max_attempts=1).retry("req", ValueError(), 1) is None


def test_the_default_backoff_is_exponential_with_full_jitter() -> None:
    backoff = RetryPolicy().backoff
    assert isinstance(backoff, ExponentialBackoff)
    assert (backoff.base, backoff.factor, backoff.max_delay, backoff.jitter) == (
        0.1,
        2.0,
        30.0,
        True,
    )


def test_waits_follow_the_backoff() -> None:
    policy = RetryPolicy(
        max_attempts=5, backoff=ExponentialBackoff(base=1.0, jitter=True, rng=random.Random(3))
    )
    expected = random.Random(3)
    waits = [policy.retry("req", ValueError(), n) for n in range(1, 5)]
    assert waits == [expected.uniform(0.0, cap) for cap in (1.0, 2.0, 4.0, 8.0)]


def test_only_errors_of_the_retry_on_classes_are_retried() -> None:
    policy = RetryPolicy(retry_on=(ConnectionError, TimeoutError), backoff=ConstantBackoff(0))
    assert policy.retry("req", ConnectionResetError(), 1) == 0
    assert policy.retry("req", TimeoutError(), 1) == 0
    assert policy.retry("req", ValueError(), 1) is None


def test_a_lone_exception_class_is_read_as_a_one_class_tuple() -> None:
    policy = RetryPolicy(retry_on=ConnectionError, backoff=ConstantBackoff(0))
    assert policy.retry("req", ConnectionError(), 1) == 0
    assert policy.retry("req", ValueError(), 1) is None


def test_retry_on_may_be_a_predicate_of_the_error() -> None:
    policy = RetryPolicy(
        retry_on=lambda exc: isinstance(exc, RateLimited), backoff=ConstantBackoff(0)
    )
    assert policy.retry("req", RateLimited("slow down", status_code=429), 1) == 0
    assert policy.retry("req", ValueError(), 1) is None


def test_cancellation_and_other_base_exceptions_are_never_retryable() -> None:
    policy = RetryPolicy(retry_on=(BaseException,), backoff=ConstantBackoff(0))
    assert policy.retry("req", KeyboardInterrupt(), 1) is None
    assert not policy.is_retryable(KeyboardInterrupt())
    assert policy.is_retryable(ValueError())
    seen: list[BaseException] = []

    def record(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    predicate = RetryPolicy(retry_on=record)
    assert not predicate.is_retryable(SystemExit())
    assert seen == []  # the predicate never sees them


@pytest.mark.anyio
async def test_anyio_cancellation_is_not_retryable() -> None:
    policy = RetryPolicy(retry_on=(BaseException,))
    caught: list[BaseException] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            caught.append(exc)
            raise
    assert len(caught) == 1
    assert not policy.is_retryable(caught[0])
    assert policy.retry("req", caught[0], 1) is None


def test_retry_after_sets_a_floor_on_the_wait() -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(0.5))
    assert policy.retry("req", Throttled(2.0), 1) == 2.0
    assert policy.retry("req", Throttled(0.1), 1) == 0.5  # the backoff is longer: it wins
    assert policy.retry("req", RateLimited("429", retry_after=7), 1) == 7.0


@pytest.mark.parametrize("value", [None, "3", -1.0, math.nan, True])
def test_unusable_retry_after_values_are_ignored(value: object) -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(0.5))
    assert policy.retry("req", Throttled(value), 1) == 0.5


@pytest.mark.parametrize("max_retry_after", [None, 60])
def test_an_infinite_retry_after_means_never_retry(max_retry_after: float | None) -> None:
    budget = RetryBudget(min_per_second=0, retry_ratio=0)  # would refuse: must not be asked
    policy = RetryPolicy(
        backoff=ConstantBackoff(0.5), max_retry_after=max_retry_after, budget=budget
    )
    down = Throttled(math.inf)
    assert policy.retry("req", down, 1) is None
    assert down.__notes__ == [
        "towerpy: not retried: the error asks never to be retried (retry_after=inf)"
    ]
    # asked again about the same error object, it says so once
    assert policy.retry("req", down, 1) is None
    assert len(down.__notes__) == 1
    assert RetryPolicy(respect_retry_after=False).retry("req", Throttled(math.inf), 1) is not None


def test_retry_after_is_ignored_when_not_respected() -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(0.5), respect_retry_after=False)
    assert policy.retry("req", Throttled(2.0), 1) == 0.5


def test_a_retry_after_longer_than_max_retry_after_gives_up_and_says_why() -> None:
    budget = RetryBudget(min_per_second=0, retry_ratio=0)  # would refuse: must not be asked
    policy = RetryPolicy(backoff=ConstantBackoff(0.5), max_retry_after=60, budget=budget)
    quota_spent = RateLimited("429", retry_after=3600)
    assert policy.retry("req", quota_spent, 1) is None
    assert quota_spent.__notes__ == [
        "towerpy: not retried: the error asks to wait 3600s, more than max_retry_after=60s"
    ]
    assert policy.max_retry_after == 60


def test_a_retry_after_within_max_retry_after_is_waited_for() -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(0.5), max_retry_after=60)
    assert policy.retry("req", Throttled(60.0), 1) == 60.0
    assert policy.retry("req", Throttled(None), 1) == 0.5
    assert policy.retry("req", ValueError(), 1) == 0.5


def test_max_retry_after_is_not_applied_when_retry_after_is_not_respected() -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(0.5), respect_retry_after=False, max_retry_after=1)
    assert policy.retry("req", Throttled(3600.0), 1) == 0.5


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (math.nan, ValueError), ("60", TypeError), (True, TypeError)],
)
def test_max_retry_after_must_be_seconds(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_retry_after must be a number of seconds >= 0"):
        RetryPolicy(max_retry_after=value)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_spent_budget_gives_up_and_says_so_on_the_error() -> None:
    budget = RetryBudget(min_per_second=0, retry_ratio=0.5)
    policy = RetryPolicy(max_attempts=10, budget=budget, backoff=ConstantBackoff(0))
    budget.deposit()
    budget.deposit()
    assert policy.retry("req", ValueError(), 1) == 0
    error = ValueError("again")
    assert policy.retry("req", error, 2) is None
    assert error.__notes__ == ["towerpy: the retry budget is spent, so this error was not retried"]


@pytest.mark.anyio
async def test_no_withdrawal_when_the_error_would_not_be_retried_anyway() -> None:
    budget = RetryBudget(min_per_second=0.1, retry_ratio=0)  # exactly one retry
    policy = RetryPolicy(max_attempts=2, budget=budget, retry_on=(ConnectionError,))
    assert policy.retry("req", ValueError(), 1) is None  # not retryable
    assert policy.retry("req", ConnectionError(), 2) is None  # out of attempts
    assert budget.available() == 1


def test_clone_request_returns_the_request_itself_by_default() -> None:
    request = {"prompt": "hi"}
    assert RetryPolicy().clone_request(request) is request


def test_retry_policy_satisfies_the_policy_protocol() -> None:
    assert isinstance(RetryPolicy(), Policy)


@pytest.mark.parametrize("attempts", [0, -3])
def test_max_attempts_below_one_raises_value_error(attempts: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=attempts)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"backoff": 0.5}, "backoff"),
        ({"budget": 3}, "budget"),
        ({"retry_on": (ValueError, "oops")}, "retry_on"),
        ({"retry_on": int}, "retry_on"),
        ({"retry_on": 42}, "retry_on"),
    ],
)
def test_arguments_of_the_wrong_type_raise_type_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        RetryPolicy(**kwargs)


def test_an_async_retry_on_predicate_is_refused() -> None:
    async def predicate(exc: BaseException) -> bool:
        return True

    with pytest.raises(TypeError, match="async"):
        RetryPolicy(retry_on=predicate)  # type: ignore[arg-type]
