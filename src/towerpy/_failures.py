"""Which failures mean "this service cannot serve now": the resilience layers' defaults.

They read only the exception tree of `towerpy.errors`, so the core layers (circuit breaker,
fallback) use them without depending on the provider adapters of `towerpy.llm`, which re-exports
`is_retryable`.
"""

from __future__ import annotations

from .errors import Elapsed, Overloaded, ProviderError, ProviderUnavailable, RateLimited

__all__ = ["is_outage", "is_retryable", "is_unavailable"]


def is_retryable(error: BaseException) -> bool:
    """Tells whether trying a failed model call again may succeed: a ready ``retry_on`` predicate.

    Use it as ``RetryPolicy(retry_on=is_retryable)``. The default ``retry_on=(Exception,)``
    would also retry a 400 (a malformed request) or a 401 (a wrong key), which fail the same
    way every time.

    Args:
        error: The exception a call raised.

    Returns:
        For a `ProviderError`, its ``retryable`` flag: True for 408, 409, 429 and 5xx answers,
        overload, timeouts and connection errors, unless the provider said otherwise with an
        ``x-should-retry`` header or an error code such as ``insufficient_quota``. True for
        `Elapsed` (a `TimeoutLayer` ran out; the next try may be faster). False for anything
        else.
    """
    if isinstance(error, ProviderError):
        return error.retryable
    return isinstance(error, Elapsed)


def is_outage(error: BaseException) -> bool:
    """Tells whether ``error`` says the service is failing (not the request): a breaker's default.

    True for a retryable `ProviderError` and for every `RateLimited` and `ProviderUnavailable`
    (a spent quota is not worth retrying, yet the provider is of no use until it resets), for
    `TimeoutError` (`Elapsed` is one) and for `ConnectionError`. False for everything else: a
    400 or a 401 fails because of the request or the key, an `Overloaded` because a limit in
    front of the service shed it, and cancellation is never a failure.
    """
    if isinstance(error, ProviderError):
        return error.retryable or isinstance(error, (RateLimited, ProviderUnavailable))
    return isinstance(error, (TimeoutError, ConnectionError))


def is_unavailable(error: BaseException) -> bool:
    """Tells whether another service may answer where this one failed: a fallback's default.

    True for what `is_outage` accepts, and for `Overloaded`: a `CircuitOpen`, a load shed, a
    limit that refused to wait. False for everything else (a 400 would fail on the fallback too).
    """
    return isinstance(error, Overloaded) or is_outage(error)
