"""Reading the quota a provider reports in its headers: every documented format, and garbage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy._ratelimits import parse_count, parse_duration, parse_instant
from towerpy.llm import RateLimitInfo

from .fake_provider import httpx_module

NOW = datetime(2026, 4, 9, 12, 0, 0, tzinfo=UTC).timestamp()


def test_openai_headers_as_their_docs_show_them() -> None:
    info = RateLimitInfo.from_headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert info == RateLimitInfo(
        limit_requests=60,
        remaining_requests=59,
        reset_requests=1.0,
        limit_tokens=150_000,
        remaining_tokens=149_984,
        reset_tokens=360.0,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("0s", 0.0),
        ("17.282s", 17.282),
        ("2m59.56s", 179.56),
        ("1h2m3.5s", 3723.5),
        ("1h", 3600.0),
        ("500us", 0.0005),
        ("500\u00b5s", 0.0005),
        ("500\u03bcs", 0.0005),
        ("30ns", 3e-8),
        (".5s", 0.5),
        ("2", 2.0),  # a compatible server's bare number of seconds
        ("0.25", 0.25),
        (" 3s ", 3.0),
    ],
)
def test_reset_durations_in_every_form_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", " ", "soon", "5 s", "-1s", "-3", "1x", "s", "1s2", "nan", "inf", "1e999", "--"]
)
def test_a_garbled_duration_reads_as_none(text: str) -> None:
    assert parse_duration(text) is None


def test_anthropic_headers_as_their_docs_show_them() -> None:
    headers = {}
    for kind, (limit, remaining, offset) in {
        "requests": (50, 49, "2026-04-09T12:00:01Z"),
        "tokens": (80_000, 79_000, "2026-04-09T12:00:06Z"),
        "input-tokens": (40_000, 39_500, "2026-04-09T12:00:03.5Z"),
        "output-tokens": (8_000, 7_500, "2026-04-09T12:00:30+00:00"),
    }.items():
        headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
        headers[f"anthropic-ratelimit-{kind}-reset"] = offset
    info = RateLimitInfo.from_headers(headers, now=NOW)
    assert info == RateLimitInfo(
        limit_requests=50,
        remaining_requests=49,
        reset_requests=1.0,
        limit_tokens=80_000,
        remaining_tokens=79_000,
        reset_tokens=6.0,
        limit_input_tokens=40_000,
        remaining_input_tokens=39_500,
        reset_input_tokens=3.5,
        limit_output_tokens=8_000,
        remaining_output_tokens=7_500,
        reset_output_tokens=30.0,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-04-09T12:00:10Z", 10.0),
        ("2026-04-09T12:00:10.250Z", 10.25),
        ("2026-04-09T12:00:10.123456789Z", 10.123456),  # nanoseconds: microseconds kept
        ("2026-04-09T14:00:10+02:00", 10.0),
        ("2026-04-09T07:00:10-05:00", 10.0),
        ("2026-04-09t12:00:10z", 10.0),  # RFC 3339 allows lower case
        ("2026-04-09 12:00:10Z", 10.0),  # and a space for the T
        ("2026-04-09T12:00:10", 10.0),  # no zone: read as UTC
        ("2026-04-09T11:59:00Z", 0.0),  # already past
    ],
)
def test_reset_instants_in_every_form_read_as_seconds_from_now(text: str, seconds: float) -> None:
    assert parse_instant(text, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "tomorrow", "2026-04-09", "2026-13-40T99:00:00Z", "12:00:00", "1712664000", "x" * 40],
)
def test_a_garbled_instant_reads_as_none(text: str) -> None:
    assert parse_instant(text, now=NOW) is None


@pytest.mark.parametrize(
    ("text", "count"), [("50", 50), ("0", 0), (" 7 ", 7), ("49.0", 49), ("1e3", 1000)]
)
def test_counts_read_as_whole_numbers(text: str, count: int) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize(
    "text", ["", "-1", "1.5", "many", "nan", "inf", "0x10", "\u00b2", "1\u00b2"]
)
def test_a_count_that_is_no_whole_number_reads_as_none(text: str) -> None:
    assert parse_count(text) is None


def test_garbage_values_give_none_fields_and_the_rest_is_kept() -> None:
    info = RateLimitInfo.from_headers(
        {
            "x-ratelimit-limit-requests": "-1",  # Azure's "no limit reported"
            "x-ratelimit-remaining-requests": "lots",
            "x-ratelimit-reset-requests": "whenever",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "",
            "x-ratelimit-reset-tokens": "1m",
        }
    )
    assert info == RateLimitInfo(limit_tokens=1000, reset_tokens=60.0)


def test_a_response_without_rate_limit_headers_has_no_info() -> None:
    assert RateLimitInfo.from_headers({"content-type": "application/json"}) is None
    assert RateLimitInfo.from_headers({}) is None
    assert RateLimitInfo.from_headers(None) is None


def test_header_names_match_without_regard_to_case() -> None:
    hx = httpx_module(__import__("openai").DefaultAsyncHttpxClient)
    headers = hx.Headers(
        {"X-RateLimit-Limit-Requests": "10", "Anthropic-RateLimit-Tokens-Limit": "5"}
    )
    info = RateLimitInfo.from_headers(headers)
    assert info is not None
    assert (info.limit_requests, info.limit_tokens) == (10, 5)
    assert RateLimitInfo.from_headers({"X-RATELIMIT-LIMIT-TOKENS": "7"}) == RateLimitInfo(
        limit_tokens=7
    )


def test_something_that_is_not_a_mapping_of_text_has_no_info() -> None:
    assert RateLimitInfo.from_headers([("x-ratelimit-limit-requests", "1")]) is None  # type: ignore[arg-type]
    assert RateLimitInfo.from_headers({1: "x"}) is None  # type: ignore[dict-item]


def test_the_info_is_frozen() -> None:
    info = RateLimitInfo(limit_requests=1)
    with pytest.raises(ValueError, match="frozen"):
        info.limit_requests = 2  # type: ignore[misc]


@settings(deadline=None, max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                f"{prefix}{name}"
                for prefix, names in {
                    "x-ratelimit-": [
                        f"{a}-{b}"
                        for a in ("limit", "remaining", "reset")
                        for b in ("requests", "tokens")
                    ],
                    "anthropic-ratelimit-": [
                        f"{b}-{a}"
                        for a in ("limit", "remaining", "reset")
                        for b in ("requests", "tokens", "input-tokens", "output-tokens")
                    ],
                }.items()
                for name in names
            ]
        ),
        st.text(),
    )
)
def test_no_header_value_ever_raises(headers: dict[str, str]) -> None:
    info = RateLimitInfo.from_headers(headers, now=NOW)
    assert (info is None) == (not headers)
    if info is not None:
        for value in info.model_dump().values():
            assert value is None or value >= 0
