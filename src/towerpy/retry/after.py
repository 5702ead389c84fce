"""Reading how long a server asked us to wait: ``retry-after-ms`` and ``Retry-After``."""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["parse_retry_after", "retry_after_from_headers"]


def _finite_seconds(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    return max(0.0, value)


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Turns one ``Retry-After`` header value into seconds to wait.

    Args:
        value: Either a number of seconds (``"2"``, ``"1.5"``) or an HTTP-date
            (``"Wed, 21 Oct 2026 07:28:00 GMT"``).
        now: The current wall-clock time (``time.time()``) for HTTP-dates; only tests pass it.
            An HTTP-date is absolute wall-clock time, the one place towerpy reads that clock.

    Returns:
        The seconds to wait, at least 0, or None when the value is neither form or not finite.
    """
    text = value.strip()
    if not text:
        return None
    try:
        return _finite_seconds(float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is read as GMT too
        return None
    return _finite_seconds(when.timestamp() - (time.time() if now is None else now))


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Reads the wait a response asks for: ``retry-after-ms`` first, then ``Retry-After``.

    Header names are matched without regard to case, whatever mapping is passed.

    Args:
        headers: The response headers.
        now: The current wall-clock time, for HTTP-dates (see `parse_retry_after`).

    Returns:
        The seconds to wait, at least 0, or None when neither header gives a usable value.
    """
    lowered = {key.lower(): val for key, val in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = _finite_seconds(float(millis.strip()) / 1000.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return seconds
    value = lowered.get("retry-after")
    return None if value is None else parse_retry_after(value, now=now)
