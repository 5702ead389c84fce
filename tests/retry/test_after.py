from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from towerpy.retry import parse_retry_after, retry_after_from_headers

NOW = 1_800_000_000.0


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, tz=UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_seconds_values(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_http_date_in_the_future_and_the_past() -> None:
    assert parse_retry_after(http_date(30), now=NOW) == 30.0
    assert parse_retry_after(http_date(-30), now=NOW) == 0.0


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_from_headers({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5


def test_header_names_are_case_insensitive() -> None:
    assert retry_after_from_headers({"Retry-After-Ms": "800"}) == 0.8
    assert retry_after_from_headers({"Retry-After": "3"}) == 3.0


def test_unusable_ms_falls_back_to_retry_after() -> None:
    assert retry_after_from_headers({"retry-after-ms": "x", "retry-after": "4"}) == 4.0


def test_no_header_means_none() -> None:
    assert retry_after_from_headers({}) is None
    assert retry_after_from_headers({"content-type": "application/json"}) is None


def test_http_date_header() -> None:
    assert retry_after_from_headers({"retry-after": http_date(10)}, now=NOW) == 10.0
