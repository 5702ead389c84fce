"""Turning what a provider SDK raises (or a failure hidden in a 200) into `ProviderError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._failures import is_retryable  # in the core, which must not import towerpy.llm
from .._ratelimits import RateLimitInfo
from ..errors import ProviderError, ProviderUnavailable, RateLimited
from ..retry.after import retry_after_from_headers

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

__all__ = ["error_from_body", "from_sdk_error", "is_retryable"]

# Anthropic reports these inside a 200 stream, or as 529; both mean "try again later"
_RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "server_error"})
# codes that say retrying cannot help even though the status is 429
_HOPELESS_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


def _should_retry_header(headers: Mapping[str, str] | None) -> bool | None:
    if headers is None:
        return None
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    return True if value == "true" else False if value == "false" else None


def _error_fields(body: object) -> tuple[str | None, str | None, object]:
    """Returns ``(message, type, code)`` from an error body, in either provider's shape."""
    if not isinstance(body, dict):
        return (body if isinstance(body, str) and body else None), None, None
    inner: Any = body.get("error", body)
    if isinstance(inner, str):  # {"error": "text"}
        return inner, None, None
    if not isinstance(inner, dict):
        return None, None, None
    message = inner.get("message")
    kind = inner.get("type")
    return (
        message if isinstance(message, str) else None,
        kind if isinstance(kind, str) else None,
        inner.get("code"),
    )


def _classify(
    status: int | None, kind: str | None, code: object, *, connection: bool
) -> tuple[type[ProviderError], bool]:
    if status == 429 or kind == "rate_limit_error":
        cls: type[ProviderError] = RateLimited
        retryable = True
    elif connection or (status is not None and status >= 500) or kind in _RETRYABLE_ERROR_TYPES:
        cls, retryable = ProviderUnavailable, True
    else:
        cls, retryable = ProviderError, status in (408, 409)
    if code in _HOPELESS_CODES or kind in _HOPELESS_CODES:
        retryable = False
    return cls, retryable


def _describe(
    provider: str, status: int | None, what: str | None, message: str | None, rid: str | None
) -> str:
    head = f"{provider}: HTTP {status}" if status is not None else f"{provider}: {what}"
    if what and status is not None:
        head = f"{head} ({what})"
    text = f"{head}: {message}" if message else head
    return f"{text} [request id {rid}]" if rid else text


def from_sdk_error(sdk: ModuleType, provider: str, exc: BaseException) -> ProviderError:
    """Maps an SDK exception (``openai.APIError`` / ``anthropic.APIError``) to a `ProviderError`.

    Args:
        sdk: The SDK module, for its exception classes.
        provider: ``"openai"`` or ``"anthropic"``.
        exc: What the SDK raised. The caller raises the result ``from exc``.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    status: int | None = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message, kind, code = _error_fields(body)
    connection = isinstance(exc, sdk.APIConnectionError)
    validation = isinstance(exc, sdk.APIResponseValidationError)
    if (status is None or status < 400) and kind is None and not (connection or validation):
        # an error event inside a 200 stream, with no type: the server failed mid-answer
        kind = "api_error"
    cls, retryable = _classify(status, kind, code, connection=connection)
    if validation:  # the answer does not have the documented shape; the same call gives the same
        cls, retryable = ProviderError, False
    override = _should_retry_header(headers)
    if override is not None:
        retryable = override
    request_id = getattr(exc, "request_id", None)
    if request_id is None and headers is not None:
        request_id = headers.get("x-request-id") or headers.get("request-id")
    if isinstance(exc, sdk.APITimeoutError):
        what: str | None = "request timed out"
    elif connection:
        what = "connection failed"
    elif validation:
        what = "the response does not match the API's schema"
    else:
        what = kind or (str(code) if code is not None else None)
    detail = message or (None if connection or validation else str(exc) or None)
    return cls(
        _describe(provider, status, what, detail, request_id),
        provider=provider,
        status_code=status,
        retry_after=None if headers is None else retry_after_from_headers(headers),
        retryable=retryable,
        request_id=request_id,
        body=body,
        rate_limits=RateLimitInfo.from_headers(headers),
    )


def error_from_body(
    provider: str, error: object, *, request_id: str | None, what: str
) -> ProviderError:
    """Builds the error for an HTTP 200 whose body carries an error, or no answer at all.

    OpenAI-compatible routers (OpenRouter) report failures that happen after the response has
    started as ``{"error": {...}}`` with status 200. Such an error's ``code`` is read as the
    HTTP status it stands for, when it is one; with no code the failure counts as retryable.

    Args:
        provider: The provider's name.
        error: The ``error`` object of the body, or None when the body simply had no answer.
        request_id: The provider's request id, when known.
        what: A short description: "no choices in the response", ...
    """
    message, kind, code = _error_fields({"error": error} if error is not None else None)
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    if status is None and kind is None:
        cls: type[ProviderError] = ProviderError
        retryable = True
    else:
        cls, retryable = _classify(status, kind, code, connection=False)
    if status is None and code is not None:
        what = f"{what}, code {code}"
    return cls(
        _describe(provider, None, what, message, request_id),
        provider=provider,
        status_code=200,
        retryable=retryable,
        request_id=request_id,
        body=error,
    )


def unreadable_answer(provider: str, exc: Exception, *, request_id: str | None) -> ProviderError:
    """Builds the error for a 200 answer whose shape the adapter cannot read (a lax server).

    The caller raises it ``from exc``; trying again would get the same shape, so it is not
    retryable.
    """
    return ProviderError(
        _describe(
            provider,
            None,
            "the answer could not be read",
            f"{type(exc).__name__}: {exc}",
            request_id,
        ),
        provider=provider,
        status_code=200,
        retryable=False,
        request_id=request_id,
    )
