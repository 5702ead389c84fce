"""RetryPolicy: which failures to retry, how often, and how long to wait before each retry."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from .._validate import (
    ExceptionMatcher,
    check_exception_matcher,
    check_methods,
    check_positive_int,
    check_seconds,
)
from ._notes import add_note
from .backoff import Backoff, ExponentialBackoff

if TYPE_CHECKING:
    from .budget import RetryBudget

__all__ = ["Policy", "RetryPolicy"]

ReqT = TypeVar("ReqT")

RetryOn: TypeAlias = ExceptionMatcher


@runtime_checkable
class Policy(Protocol[ReqT]):
    """What `RetryLayer` asks about each failure: implement these two methods for a custom policy.

    `RetryPolicy` is the ready-made one; subclass it to change one decision and keep the rest.
    """

    def retry(self, request: ReqT, error: BaseException, attempt: int) -> float | None:
        """Returns the seconds to wait before trying ``request`` again, or None to give up.

        Args:
            request: The request as the caller passed it.
            error: The exception try number ``attempt`` raised. Never a cancellation.
            attempt: The number of the try that failed, counting from 1.
        """
        ...

    def clone_request(self, request: ReqT) -> ReqT:
        """Returns the request to send for one try; called once before every try."""
        ...


class RetryPolicy:
    """The default retry policy: retry chosen errors a few times, with backoff, within a budget.

    Args:
        max_attempts: Tries in all, the first included (1: never retry).
        backoff: How long to wait after each failed try; by default
            ``ExponentialBackoff()`` (0.1 s, doubling, up to 30 s, with full jitter).
        retry_on: The exception classes to retry (a tuple, or one class), or a function that
            tells from the exception whether to retry it. Only `Exception` instances reach it:
            cancellation and other `BaseException` are never retried.
        budget: A `RetryBudget` (shareable between policies) that every retry must withdraw
            from; None for no budget.
        respect_retry_after: Wait at least as long as the error's ``retry_after`` attribute
            (seconds) says, when it has one: a provider's ``Retry-After`` header, say. An
            infinite ``retry_after`` means "never retry": the error propagates at once.
        max_retry_after: Give up at once, instead of waiting, when an error's ``retry_after``
            is longer than this many seconds (a spent daily quota can ask for hours); None
            (the default) waits however long it asks.

    Raises:
        ValueError: ``max_attempts`` is below 1, or ``max_retry_after`` is negative or NaN.
        TypeError: An argument has the wrong type (for example ``retry_on`` holds something that
            is not an exception class, or is an async function; ``backoff`` or ``budget`` lacks
            their methods; ``max_retry_after`` is not a number).
    """

    __slots__ = (
        "_backoff",
        "_budget",
        "_max_attempts",
        "_max_retry_after",
        "_respect_retry_after",
        "_retry_on",
        "_retry_on_given",
    )

    def __init__(
        self,
        max_attempts: int = 3,
        *,
        backoff: Backoff | None = None,
        retry_on: RetryOn = (Exception,),
        budget: RetryBudget | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float | None = None,
    ) -> None:
        check_positive_int("max_attempts", max_attempts)
        if backoff is not None:
            check_methods(
                "backoff",
                backoff,
                ("delay",),
                "a Backoff with a delay(attempt) method (ExponentialBackoff, ConstantBackoff)",
            )
        if budget is not None:
            check_methods("budget", budget, ("deposit", "withdraw"), "a RetryBudget")
        self._retry_on = check_exception_matcher("retry_on", retry_on)
        self._retry_on_given = retry_on  # for the repr: the tuple or function the user wrote
        if max_retry_after is not None:
            check_seconds("max_retry_after", max_retry_after)
        self._max_attempts = max_attempts
        self._backoff: Backoff = ExponentialBackoff() if backoff is None else backoff
        self._budget = budget
        self._respect_retry_after = bool(respect_retry_after)
        self._max_retry_after = max_retry_after

    def retry(self, request: Any, error: BaseException, attempt: int) -> float | None:
        """Decides whether to try again after try number ``attempt`` failed with ``error``.

        It gives up when ``max_attempts`` tries were made, when ``error`` is not retryable, when
        it asks never to be retried (``retry_after`` is infinite) or to wait longer than
        ``max_retry_after``, or when the budget allows no more retries; otherwise the wait is
        the backoff's delay, raised to the error's ``retry_after`` when ``respect_retry_after``
        is set.

        Args:
            request: The request as the caller passed it.
            error: The exception the try raised.
            attempt: The number of the try that failed, counting from 1.

        Returns:
            The seconds to wait before the next try, or None to give up.
        """
        if attempt >= self._max_attempts or not self.is_retryable(error):
            return None
        asked = getattr(error, "retry_after", None) if self._respect_retry_after else None
        if not isinstance(asked, (int, float)) or isinstance(asked, bool):
            asked = None
        if asked == math.inf:
            add_note(
                error,
                self,
                "towerpy: not retried: the error asks never to be retried (retry_after=inf)",
            )
            return None
        limit = self._max_retry_after
        if asked is not None and limit is not None and asked > limit:
            add_note(
                error,
                self,
                f"towerpy: not retried: the error asks to wait {asked:g}s, more than "
                f"max_retry_after={limit:g}s",
            )
            return None
        budget = self._budget
        if budget is not None and not budget.withdraw():
            add_note(
                error, self, "towerpy: the retry budget is spent, so this error was not retried"
            )
            return None
        delay = self._backoff.delay(attempt)
        if asked is not None and delay < asked:
            delay = float(asked)
        return delay

    def is_retryable(self, error: BaseException) -> bool:
        """Tells whether ``error`` is one that ``retry_on`` selects (cancellation never is)."""
        return isinstance(error, Exception) and bool(self._retry_on(error))

    def clone_request(self, request: ReqT) -> ReqT:
        """Returns the request to send for one try: the request itself.

        Override it when a request cannot be sent twice (a stream, a consumed body): it is
        called once before every try, the first included.
        """
        return request

    @property
    def max_attempts(self) -> int:
        """Tries in all, the first included."""
        return self._max_attempts

    @property
    def backoff(self) -> Backoff:
        """How long to wait after each failed try."""
        return self._backoff

    @property
    def budget(self) -> RetryBudget | None:
        """The budget retries withdraw from, if any."""
        return self._budget

    @property
    def max_retry_after(self) -> float | None:
        """The longest ``retry_after`` worth waiting for; longer ones give up. None: no limit."""
        return self._max_retry_after

    @property
    def respect_retry_after(self) -> bool:
        """Whether a wait is at least the error's ``retry_after``."""
        return self._respect_retry_after

    def __repr__(self) -> str:
        given = self._retry_on_given
        retry_on = (given,) if isinstance(given, type) else given  # one class shows as a tuple
        return (
            f"{type(self).__name__}(max_attempts={self._max_attempts}, backoff={self._backoff!r}, "
            f"retry_on={retry_on!r}, budget={self._budget!r})"
        )
