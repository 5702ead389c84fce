"""Every exception towerpy raises, in one tree.

::

    TowerError(Exception)
    ├── Elapsed(TowerError, TimeoutError)        a call ran past its time limit
    │   └── WaitElapsed                          a call waited past its bound, never started
    ├── Overloaded                               a service shed load instead of waiting
    │   └── CircuitOpen                          a circuit breaker refuses calls for now
    ├── ServiceClosed                            a service is not running (or stopped running)
    ├── RequestTooLarge(TowerError, ValueError)  a request can never fit a limit
    ├── LimiterUnavailable                       a shared limit's server (Redis) did not answer
    ├── ToolError
    │   ├── ToolNotFound                         no tool has that name
    │   ├── InvalidToolArguments                 the arguments do not fit the tool's schema
    │   └── DependencyFailed                     a call never ran: one it depends on failed
    ├── MaxStepsExceeded                         an agent made as many model calls as allowed
    ├── ScriptExhausted(TowerError, RuntimeError) a scripted model was called past its script
    └── ProviderError                            a model provider answered with a failure
        ├── RateLimited                          HTTP 429
        └── ProviderUnavailable                  5xx, overloaded, timeouts, connection errors

Any exception, towerpy's or not, may carry a ``retry_after`` attribute (seconds, or ``None``):
`towerpy.RetryLayer` waits at least that long before the next try.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._ratelimits import RateLimitInfo

from . import _observe

__all__ = [
    "CircuitOpen",
    "DependencyFailed",
    "Elapsed",
    "InvalidToolArguments",
    "LimiterUnavailable",
    "MaxStepsExceeded",
    "Overloaded",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "RequestTooLarge",
    "ScriptExhausted",
    "ServiceClosed",
    "ToolError",
    "ToolNotFound",
    "TowerError",
    "WaitElapsed",
]


class TowerError(Exception):
    """Base class of every exception towerpy raises.

    Attributes:
        retry_after: Seconds a retry should wait at least, or ``None`` when the error says nothing
            about it. `RetryLayer` honours it on any exception that has it.
    """

    retry_after: float | None = None


class Elapsed(TowerError, TimeoutError):
    """Raised by `Timeout` when the inner call runs longer than its limit.

    It is a `TimeoutError`, so code that already catches timeouts catches it too.

    Attributes:
        seconds: The limit that was exceeded, when known.
    """

    def __init__(self, message: str = "request timed out", *, seconds: float | None = None):
        super().__init__(message)
        self.seconds = seconds
        if _observe.timeout is not None:  # a time limit passed: counted, logged
            _observe.timeout(self)


class WaitElapsed(Elapsed):
    """Raised when a call waited longer than its bound for capacity and never started.

    `ParallelToolRouter`'s ``wait_timeout`` raises it for an invocation still waiting for a
    concurrency permit, rate tokens or a worker thread: unlike its parent `Elapsed`, nothing
    ran. ``seconds`` is the bound.
    """


class Overloaded(TowerError):
    """Raised by `LoadShed` when the inner service is not ready at once."""


class CircuitOpen(Overloaded):
    """Raised by a circuit breaker's service when its circuit refuses calls.

    The circuit is open (too many failures in a row; nothing is sent until it recovers), or
    half-open with every probe already in flight. The inner service was not called. It is an
    `Overloaded`: code that sheds load or falls back on overload handles it too.

    Attributes:
        retry_after: Seconds until the circuit lets a probe through (0 when it is half-open and
            waits for its probes to finish). `RetryLayer` waits at least that long.
    """

    def __init__(self, message: str = "circuit open", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ServiceClosed(TowerError):
    """Raised when a service that needs a running scope is used outside it, or has stopped.

    Its ``__cause__`` is the failure that closed the service, if any.
    """


class RequestTooLarge(TowerError, ValueError):
    """Raised by a rate limit when a request costs more than the bucket can ever hold."""


class LimiterUnavailable(TowerError):
    """Raised by a shared limit (`towerpy.redis`) when its server did not answer in time.

    The limit fails closed: the request is not admitted. Its ``__cause__`` is the client's
    error (or the timeout). `RetryLayer` waits ``retry_after`` before trying again. With
    ``on_unavailable="allow"`` the limit admits the request instead and counts it.

    Attributes:
        limiter: The limit that could not decide, e.g. ``"RedisTokenBucket 'openai-tpm'"``.
        retry_after: Seconds to wait before trying again.
    """

    def __init__(
        self, message: str, *, limiter: str | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.limiter = limiter
        self.retry_after = retry_after


class ToolError(TowerError):
    """Base class of the errors a tool router raises about a tool invocation itself."""


class ToolNotFound(ToolError):
    """Raised by `ToolRouter` when no tool has the invoked name."""


class InvalidToolArguments(ToolError):
    """Raised when a tool's arguments are not a JSON object or do not fit its schema."""


class DependencyFailed(ToolError):
    """Raised for an invocation that never ran because one it depends on failed.

    A batch with dependencies (``ToolInvocation.depends_on``) gives it to every invocation
    that depends, directly or not, on a failed one: as its error output under ``ISOLATE``, as
    its outcome under ``JOIN_ALL``. Its ``__cause__`` is the dependency's error.

    Attributes:
        dependency: The id of the failed invocation.
    """

    def __init__(self, message: str, *, dependency: str):
        super().__init__(message)
        self.dependency = dependency


class MaxStepsExceeded(TowerError):
    """Raised by `Agent.run` when the model still asks for tools after ``max_steps`` calls.

    Attributes:
        messages: The conversation so far, so a caller can inspect or resume it.
    """

    def __init__(self, message: str, *, messages: list[Any] | None = None):
        super().__init__(message)
        self.messages: list[Any] = list(messages or [])


class ScriptExhausted(TowerError, RuntimeError):
    """Raised by `ScriptedModel` when it is called more times than its script has entries."""


class ProviderError(TowerError):
    """Raised by a model step service when the provider answers with a failure.

    The SDK's exception is the ``__cause__``.

    Attributes:
        provider: ``"openai"``, ``"anthropic"``, or another adapter's name.
        status_code: The HTTP status, when there was a response.
        retry_after: Seconds the provider asked to wait (``retry-after-ms`` / ``Retry-After``).
        retryable: Whether trying again may succeed (see `towerpy.llm.is_retryable`).
        request_id: The provider's request id, for support tickets.
        body: The decoded error body, when there was one.
        rate_limits: The key's quota as the error response's headers reported it, when they
            did (see `towerpy.llm.RateLimitInfo`).
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
        request_id: str | None = None,
        body: object = None,
        rate_limits: RateLimitInfo | None = None,
    ):
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = retryable
        self.request_id = request_id
        self.body = body
        self.rate_limits = rate_limits


class RateLimited(ProviderError):
    """Raised when the provider answers HTTP 429 (too many requests or tokens)."""


class ProviderUnavailable(ProviderError):
    """Raised on 5xx answers, overload, timeouts and connection errors."""
