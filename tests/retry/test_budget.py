from __future__ import annotations

import math
from fractions import Fraction

import anyio
import pytest

from towerpy.retry import RetryBudget

pytestmark = pytest.mark.anyio


def withdraw_all(budget: RetryBudget) -> int:
    count = 0
    while budget.withdraw():
        count += 1
    return count


async def test_no_floor_and_no_ratio_allows_no_retry_at_all() -> None:
    budget = RetryBudget(min_per_second=0, retry_ratio=0)
    for _ in range(1000):
        budget.deposit()
    assert budget.available() == 0
    assert not budget.withdraw()


async def test_the_floor_allows_min_per_second_times_ttl_retries_without_requests() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=2.0, retry_ratio=0.0)
    assert budget.available() == 20
    assert withdraw_all(budget) == 20


async def test_each_request_earns_retry_ratio_retries() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=0, retry_ratio=0.2)
    for _ in range(4):
        budget.deposit()
    assert not budget.withdraw()  # 4 * 0.2 = 0.8: not yet a whole retry
    budget.deposit()
    assert budget.withdraw()
    assert not budget.withdraw()


@pytest.mark.parametrize(
    ("ratio", "requests", "retries"),
    [
        (0.3, 100, 30),  # tower's TpsBudget rounds 1/0.3 down to 3 and allows 33 (issue #857)
        (0.57, 100, 57),  # 0.57 * 100 is 56.99999999999999 in floats
        (0.1, 10, 1),
        (1.5, 10, 15),
        (Fraction(1, 3), 9, 3),
        (1, 7, 7),
    ],
)
async def test_fractional_ratios_are_honoured_exactly(
    ratio: float, requests: int, retries: int
) -> None:
    budget = RetryBudget(min_per_second=0, retry_ratio=ratio)
    for _ in range(requests):
        budget.deposit()
    assert budget.available() == retries
    assert withdraw_all(budget) == retries


async def test_floor_and_ratio_add_up() -> None:
    budget = RetryBudget(ttl=1.0, min_per_second=0.5, retry_ratio=0.25)
    for _ in range(6):
        budget.deposit()
    assert withdraw_all(budget) == 2  # 0.5 * 1 + 0.25 * 6 = 2.0


async def test_spent_budget_recovers_as_the_window_moves_past_old_retries() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=0.1, retry_ratio=0)  # one retry per 10 s
    start = anyio.current_time()
    assert budget.withdraw()
    assert not budget.withdraw()
    await anyio.sleep(9.999)
    assert not budget.withdraw()  # the retry at `start` still counts
    await anyio.sleep_until(start + 10.0)
    assert budget.withdraw()
    assert not budget.withdraw()


async def test_requests_stop_counting_after_ttl() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=0, retry_ratio=0.5)
    start = anyio.current_time()
    for _ in range(4):
        budget.deposit()
    await anyio.sleep(5.0)
    for _ in range(2):
        budget.deposit()
    assert budget.available() == 3
    await anyio.sleep_until(start + 10.0)
    assert budget.available() == 1  # the first four fell out of the window; two remain
    await anyio.sleep_until(start + 15.0)
    assert budget.available() == 0


async def test_the_window_moves_in_tenths_of_ttl() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=0, retry_ratio=1)
    start = anyio.current_time()
    assert budget.available() == 0  # the first use starts the window: slots [start + k, +1)
    await anyio.sleep(0.5)
    budget.deposit()  # counted in the slot [start, start + 1)
    await anyio.sleep_until(start + 9.999)
    assert budget.available() == 1
    await anyio.sleep_until(start + 10.0)
    assert budget.available() == 0


async def test_a_long_quiet_time_forgets_everything() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=0, retry_ratio=1)
    for _ in range(5):
        budget.deposit()
    assert budget.withdraw()
    await anyio.sleep(3600.0)
    assert budget.available() == 0
    budget.deposit()
    assert budget.available() == 1


async def test_one_budget_shared_by_two_users_is_one_allowance() -> None:
    budget = RetryBudget(ttl=10.0, min_per_second=0, retry_ratio=0.5)
    budget.deposit()
    budget.deposit()
    assert budget.withdraw()  # one user
    assert not budget.withdraw()  # the other finds it spent


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1.0}, "ttl"),
        ({"ttl": math.inf}, "ttl"),
        ({"min_per_second": -1}, "min_per_second"),
        ({"min_per_second": math.nan}, "min_per_second"),
        ({"retry_ratio": -0.1}, "retry_ratio"),
        ({"retry_ratio": math.inf}, "retry_ratio"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        RetryBudget(**kwargs)


def test_non_numbers_raise_type_error() -> None:
    with pytest.raises(TypeError, match="retry_ratio"):
        RetryBudget(retry_ratio="0.2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ttl"):
        RetryBudget(ttl=True)


def test_repr_shows_the_settings() -> None:
    assert repr(RetryBudget()) == "RetryBudget(ttl=10.0, min_per_second=10.0, retry_ratio=0.2)"
