"""`RateLimitInfo`: the quota a provider reports in its response headers, read without failing.

Two header families are read:

- OpenAI (and the compatible servers that copy it: Groq, Together, vLLM's proxies...):
  ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
  ``x-ratelimit-reset-requests`` and the same three for ``-tokens``. Resets are Go durations,
  the time until the bucket is full again: ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``; a bare
  number is read as seconds.
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
  remaining,reset}``. Resets are RFC 3339 instants (``2026-04-09T12:00:30Z``), turned into
  seconds from now on the wall clock (``time.time()``): an absolute instant can only be read
  on that clock, the one justified exception to the anyio clock, as for ``Retry-After``.

A header that is missing, empty, negative (Azure sends ``-1``) or unreadable gives None for
its field; no header value ever raises.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = [
    "RateLimitInfo",
    "create_reading_headers",
    "parse_count",
    "parse_duration",
    "parse_instant",
]

_OPENAI = "x-ratelimit-"
_ANTHROPIC = "anthropic-ratelimit-"

# a Go duration: one or more <number><unit>, e.g. 6m0s, 1h2m3.5s, 20ms, 1.5µs
_UNIT_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek small letter mu
    "ns": 1e-9,
}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(h|ms|m|s|us|\u00b5s|\u03bcs|ns)")
_DURATION = re.compile(r"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:h|ms|m|s|us|\u00b5s|\u03bcs|ns))+")


def _fields() -> list[tuple[str, str, Callable[[str], float | None]]]:
    """(field, header, parser) for every header read, OpenAI's first."""
    fields: list[tuple[str, str, Callable[[str], float | None]]] = []
    for kind in ("requests", "tokens"):
        fields.append((f"limit_{kind}", f"{_OPENAI}limit-{kind}", parse_count))
        fields.append((f"remaining_{kind}", f"{_OPENAI}remaining-{kind}", parse_count))
        fields.append((f"reset_{kind}", f"{_OPENAI}reset-{kind}", parse_duration))
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        field = kind.replace("-", "_")
        fields.append((f"limit_{field}", f"{_ANTHROPIC}{kind}-limit", parse_count))
        fields.append((f"remaining_{field}", f"{_ANTHROPIC}{kind}-remaining", parse_count))
        fields.append((f"reset_{field}", f"{_ANTHROPIC}{kind}-reset", parse_instant))
    return fields


class RateLimitInfo(BaseModel, frozen=True):
    """What a provider said about the key's quota, in the headers of one response.

    Every field is None when the provider did not send it or sent something unreadable.

    Attributes:
        limit_requests: Requests allowed per period (a minute, at OpenAI and Anthropic).
        remaining_requests: Requests left now.
        reset_requests: Seconds from the response until the request budget is full again
            (OpenAI) or until it is replenished (Anthropic).
        limit_tokens: Tokens allowed per period. At Anthropic, the most restrictive of the
            token limits in effect.
        remaining_tokens: Tokens left now.
        reset_tokens: Seconds from the response until the token budget is full again.
        limit_input_tokens: Anthropic's input-token limit per period.
        remaining_input_tokens: Anthropic's input tokens left.
        reset_input_tokens: Seconds until Anthropic's input-token budget is replenished.
        limit_output_tokens: Anthropic's output-token limit per period.
        remaining_output_tokens: Anthropic's output tokens left.
        reset_output_tokens: Seconds until Anthropic's output-token budget is replenished.
    """

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    limit_input_tokens: int | None = None
    remaining_input_tokens: int | None = None
    reset_input_tokens: float | None = None
    limit_output_tokens: int | None = None
    remaining_output_tokens: int | None = None
    reset_output_tokens: float | None = None

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str] | None, *, now: float | None = None
    ) -> RateLimitInfo | None:
        """Reads the rate-limit headers of a response, OpenAI's or Anthropic's.

        Header names are matched without regard to case. Never raises for a header's value.

        Args:
            headers: The response headers (an ``httpx.Headers`` or any mapping), or None.
            now: The wall-clock time (``time.time()``) that Anthropic's reset instants are
                measured from; only tests pass it.

        Returns:
            The parsed quota, or None when the response carries no rate-limit header at all.
        """
        if headers is None:
            return None
        found: dict[str, str] = {}
        try:
            for header, text in headers.items():
                key = header.lower()
                if key.startswith((_OPENAI, _ANTHROPIC)):
                    found[key] = text
        except (AttributeError, TypeError):  # not a mapping of text: nothing to read
            return None
        if not found:
            return None
        fields: dict[str, int | float | None] = {}
        wall: float | None = now
        for field, header, parse in _FIELDS:
            raw = found.get(header)
            if raw is None or fields.get(field) is not None:
                continue  # an OpenAI value wins over an Anthropic one for the same field
            if parse is parse_instant:
                if wall is None:
                    wall = time.time()
                value = parse_instant(raw, now=wall)
            else:
                value = parse(raw)
            if value is not None:
                fields[field] = value
        # pydantic's own checks cost less here than model_construct, and keep the types honest
        return cls(**fields)


def parse_count(value: str | None) -> int | None:
    """Reads a non-negative whole number (``"50"``, ``"49.0"``); None when it is not one."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


def parse_duration(value: str | None) -> float | None:
    """Reads a reset duration: a Go duration (``6m0s``, ``20ms``) or a number of seconds.

    Returns:
        The seconds, or None when the text is neither (or is negative, or not finite).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DURATION.fullmatch(text):
        total = 0.0
        for number, unit in _PART.findall(text):
            total += float(number) * _UNIT_SECONDS[unit]
        return total if math.isfinite(total) else None
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_instant(value: str | None, *, now: float | None = None) -> float | None:
    """Reads an RFC 3339 instant (``2026-04-09T12:00:30Z``) as seconds from ``now``, >= 0.

    An instant without a zone is read as UTC. Seconds already past read as 0.

    Args:
        value: The header's text.
        now: The wall-clock time to measure from; ``time.time()`` when None.

    Returns:
        The seconds from now, or None when the text is not an instant.
    """
    if value is None:
        return None
    text = value.strip().upper()
    if len(text) < 16 or text[10] not in "T ":  # a date alone is not an instant
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        stamp = when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    seconds = stamp - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


async def create_reading_headers(
    create_raw: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]
) -> tuple[Any, RateLimitInfo | None]:
    """Makes an SDK call through its ``with_raw_response`` form; returns the answer and quota.

    Args:
        create_raw: ``client.chat.completions.with_raw_response.create`` or
            ``client.messages.with_raw_response.create``.
        kwargs: The call's arguments.

    Returns:
        The parsed answer (what the plain ``create`` returns) and the response's rate limits.
        The SDK's errors (a failed response, one that does not validate) propagate.
    """
    raw = await create_raw(**kwargs)
    parsed = raw.parse()  # OpenAI's legacy response parses at once, Anthropic's is awaited
    if inspect.isawaitable(parsed):
        parsed = await parsed
    return parsed, RateLimitInfo.from_headers(raw.headers)


_FIELDS = _fields()
