from __future__ import annotations

import math
import random

import pytest

from towerpy.retry import Backoff, ConstantBackoff, ExponentialBackoff


def test_without_jitter_waits_double_from_base_up_to_max_delay() -> None:
    backoff = ExponentialBackoff(base=0.1, factor=2.0, max_delay=1.0, jitter=False)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_the_first_wait_is_base() -> None:
    assert ExponentialBackoff(base=0.25, jitter=False).delay(1) == 0.25


def test_full_jitter_draws_uniformly_below_each_wait_from_the_given_random_source() -> None:
    backoff = ExponentialBackoff(base=1.0, factor=3.0, max_delay=20.0, rng=random.Random(42))
    expected = random.Random(42)
    caps = [1.0, 3.0, 9.0, 20.0, 20.0]
    delays = [backoff.delay(n) for n in range(1, 6)]
    assert delays == [expected.uniform(0.0, cap) for cap in caps]
    assert all(0.0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))


def test_the_same_seed_gives_the_same_waits() -> None:
    first = ExponentialBackoff(rng=random.Random(7))
    second = ExponentialBackoff(rng=random.Random(7))
    assert [first.delay(n) for n in range(1, 10)] == [second.delay(n) for n in range(1, 10)]


def test_a_huge_attempt_number_waits_max_delay_instead_of_overflowing() -> None:
    backoff = ExponentialBackoff(base=0.1, factor=10.0, max_delay=30.0, jitter=False)
    assert backoff.delay(10_000) == 30.0


def test_base_zero_never_waits() -> None:
    backoff = ExponentialBackoff(base=0.0, factor=10.0, jitter=False)
    assert backoff.delay(1) == 0.0
    assert backoff.delay(10_000) == 0.0


def test_factor_one_waits_base_every_time() -> None:
    backoff = ExponentialBackoff(base=0.5, factor=1, jitter=False)
    assert {backoff.delay(n) for n in range(1, 20)} == {0.5}


def test_constant_backoff_waits_the_same_after_every_try() -> None:
    backoff = ConstantBackoff(0.3)
    assert [backoff.delay(n) for n in (1, 2, 50)] == [0.3, 0.3, 0.3]


def test_both_satisfy_the_backoff_protocol() -> None:
    assert isinstance(ExponentialBackoff(), Backoff)
    assert isinstance(ConstantBackoff(0), Backoff)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"base": -0.1}, "base"),
        ({"base": math.inf}, "base"),
        ({"base": math.nan}, "base"),
        ({"max_delay": -1.0}, "max_delay"),
        ({"factor": 0.5}, "factor"),
        ({"factor": -2.0}, "factor"),
        ({"factor": math.inf}, "factor"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        ExponentialBackoff(**kwargs)  # type: ignore[arg-type]


def test_a_negative_constant_delay_raises_value_error() -> None:
    with pytest.raises(ValueError, match="delay"):
        ConstantBackoff(-1)


def test_non_numbers_raise_type_error() -> None:
    with pytest.raises(TypeError, match="base"):
        ExponentialBackoff(base="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rng"):
        ExponentialBackoff(rng=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        ExponentialBackoff().delay(attempt)
    with pytest.raises(ValueError, match="attempt"):
        ConstantBackoff(1).delay(attempt)
