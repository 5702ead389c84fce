"""Retry: tries a failed call again, as a policy decides."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
import anyio.lowlevel
from typing_extensions import override

from .. import _observe
from .._service import Middleware, Service
from .._validate import check_methods
from ._notes import add_note, drop_notes
from .policy import Policy, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Retry", "RetryLayer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


def _check_policy(policy: object) -> None:
    check_methods(
        "policy",
        policy,
        ("retry", "clone_request"),
        "a policy with retry() and clone_request() methods (a RetryPolicy)",
    )


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


@final
class Retry(Middleware[ReqT, RespT], direct_call=True):
    """Tries a failed call again, as its policy decides, waiting between tries.

    ``ready()`` is the inner service's: a reservation it makes serves the first try; each
    retry waits for the inner service's capacity anew. ``call()`` makes the first try at once
    (the policy's ``clone_request`` gives the request for each try). When a try raises an
    `Exception`, the policy's ``retry(request, error, attempt)`` returns the seconds to wait
    before the next try, or None to give up: then that error propagates unchanged, with a note
    giving the number of tries made (one such note: an error object raised again by a later
    call has its note replaced, not repeated). Cancellation is never retried and never shown to the
    policy, and the wait between tries is cancellable. When the policy has a ``budget``, each
    call deposits into it; that is all a call costs until something fails.

    Args:
        inner: The service to call.
        policy: Decides what to retry and how long to wait (a `RetryPolicy`).

    Raises:
        TypeError: ``policy`` lacks ``retry``/``clone_request``, or ``retry`` returned
            something other than seconds or None (raised from the error it was deciding on).
        ValueError: ``retry`` returned a negative or infinite wait.
    """

    __slots__ = ("_clone", "_deposit", "_policy")

    def __init__(self, inner: Service[ReqT, RespT], policy: Policy[ReqT]) -> None:
        _check_policy(policy)
        super().__init__(inner)
        self._policy = policy
        budget = getattr(policy, "budget", None)
        self._deposit: Callable[[], object] | None = None if budget is None else budget.deposit
        # the default clone_request returns the request itself: skip the call on the hot path
        default = getattr(type(policy), "clone_request", None) is RetryPolicy.clone_request
        self._clone: Callable[[ReqT], ReqT] | None = None if default else policy.clone_request

    @override
    async def call(self, request: ReqT) -> RespT:
        deposit = self._deposit
        if deposit is not None:
            deposit()
        clone = self._clone
        attempt_request = request if clone is None else clone(request)
        try:
            response: RespT = await self.inner(attempt_request)
        except Exception as exc:
            error = exc
        else:
            return response
        return await self._retry(request, error)

    async def _retry(self, request: ReqT, error: Exception) -> RespT:
        policy = self._policy
        clone = self._clone
        attempt = 1
        while True:
            if anyio.current_effective_deadline() == -math.inf:
                # the caller is being cancelled and the error is most likely its echo: make no
                # decision, let the cancellation through
                await anyio.lowlevel.checkpoint()
            # the same error object may come back, from this call or an earlier one: what this
            # layer and its policy noted on it then is replaced by what they note now
            drop_notes(error, self, policy)
            try:
                delay = policy.retry(request, error, attempt)
            except Exception as policy_error:
                # show the failure being decided on in the policy's own traceback
                policy_error.__context__ = policy_error.__context__ or error
                raise
            if delay is None:
                add_note(error, self, f"towerpy: RetryLayer gave up after {_attempts(attempt)}")
                if _observe.give_up is not None:
                    _observe.give_up(error, attempt)
                raise error
            pause = self._checked(delay, error)
            await (
                anyio.sleep(pause)
                if _observe.retry is None
                else _observe.retry(error, attempt, pause)
            )
            attempt += 1
            attempt_request = request if clone is None else clone(request)
            try:
                response: RespT = await self.inner(attempt_request)
            except Exception as exc:
                error = exc
            else:
                return response

    def _checked(self, delay: Any, error: Exception) -> float:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise TypeError(
                f"{self._policy!r}.retry() must return seconds to wait or None, "
                f"got {type(delay).__name__}"
            ) from error
        if not (0 <= delay < math.inf):
            raise ValueError(
                f"{self._policy!r}.retry() must return seconds >= 0 (finite) or None, got {delay!r}"
            ) from error
        return delay

    @property
    def policy(self) -> Policy[ReqT]:
        """The retry policy."""
        return self._policy

    def __repr__(self) -> str:
        return f"Retry({self.inner!r}, {self._policy!r})"


@final
class RetryLayer:
    """Layer of `Retry`: tries failed calls again, as ``policy`` decides.

    Args:
        policy: A `RetryPolicy`, or any object with the same two methods (`Policy`).

    Raises:
        TypeError: ``policy`` is a class, or lacks plain ``retry``/``clone_request`` methods.
    """

    __slots__ = ("_policy",)

    def __init__(self, policy: Policy[Any]) -> None:
        _check_policy(policy)
        self._policy = policy

    def layer(self, inner: Service[ReqT, RespT]) -> Retry[ReqT, RespT]:
        """Wraps ``inner`` in a `Retry`."""
        return Retry(inner, self._policy)

    @property
    def policy(self) -> Policy[Any]:
        """The retry policy."""
        return self._policy

    def __repr__(self) -> str:
        return f"RetryLayer({self._policy!r})"
