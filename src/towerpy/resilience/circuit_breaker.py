"""Circuit: stops calling a failing service for a while, and refuses at once instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, final

from typing_extensions import override

from .._service import Middleware, Service
from ..lowlevel import drop, held, hold, refuse_if_shedding, take
from ._routing import wants_admission
from .breaker import PASS, CircuitBreaker, CircuitBreakerStatistics

if TYPE_CHECKING:
    from .._validate import ExceptionMatcher

__all__ = ["Circuit", "CircuitBreakerLayer"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@final
class Circuit(Middleware[ReqT, RespT], direct_call=True):
    """Sends calls to the inner service while its `CircuitBreaker` lets them through.

    While the circuit is closed, calls pass and their outcomes are counted. While it is open,
    or half-open with every probe permit taken, a call is refused with `CircuitOpen` (an
    `Overloaded`, whose ``retry_after`` says when probes go through) and the inner service is
    not called; what the caller's ``ready()`` reserved below is given back at once.

    - ``ready()``: closed, it waits for the inner service's readiness. Half-open, it reserves a
      probe permit for the calling task's next ``call()``, then waits for the inner service.
      When the call will be refused, it returns at once and reserves nothing: the call fails
      fast, it does not wait out the recovery. (A `Balance` waiting for an endpoint asks for the
      other answer: there ``ready()`` waits until the circuit lets a call through.)
    - ``try_ready()``: False when the call would be refused, holding nothing; otherwise as
      ``ready()``, without waiting.
    - ``call()``: uses the task's probe reservation, or takes a permit itself; refuses as
      above. A probe cancelled or ending in an error the breaker does not count gives its
      permit back.

    Raises:
        CircuitOpen: From ``call()``, when the circuit refuses the call.

    Args:
        inner: The service to protect.
        breaker: The circuit's state; several services may share one. By default a new
            `CircuitBreaker()`.
    """

    __slots__ = ("_breaker",)
    _towerpy_sheds = True  # it never waits under a LoadShed, and lets an Overloaded through

    def __init__(self, inner: Service[ReqT, RespT], breaker: CircuitBreaker | None = None) -> None:
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker, got {type(breaker).__name__}")
        super().__init__(inner)
        self._breaker = CircuitBreaker() if breaker is None else breaker

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit's state (shared with other services, if it is shared)."""
        return self._breaker

    @override
    async def ready(self) -> None:
        breaker = self._breaker
        reservation = held(self)
        if reservation is None or not breaker.is_current(reservation.token):
            if reservation is not None:
                drop(self)  # a probe permit of a half-open period that is over admits nothing
            permit = breaker.admit_nowait()
            if permit is None:
                if not wants_admission():
                    return  # refused: the next call() raises at once, nothing to wait for
                refuse_if_shedding(self)
                permit = await breaker.admit()
            if permit is not PASS:  # closed circuits need no permit
                hold(self, permit, breaker.give_back)
        try:
            await self.inner.ready()
        except BaseException:
            drop(self)
            raise

    @override
    async def try_ready(self) -> bool:
        breaker = self._breaker
        reservation = held(self)
        if reservation is None or not breaker.is_current(reservation.token):
            if reservation is not None:
                drop(self)
            permit = breaker.admit_nowait()
            if permit is None:
                self.inner.drop_reservation()  # False holds nothing, here or below
                return False
            if permit is not PASS:
                hold(self, permit, breaker.give_back)
        try:
            ready = await self.inner.try_ready()
        except BaseException:
            drop(self)
            raise
        if not ready:
            drop(self)
        return ready

    @override
    async def call(self, request: ReqT) -> RespT:
        breaker = self._breaker
        reservation = take(self)
        permit = None if reservation is None else reservation.token
        if permit is None or not breaker.is_current(permit):
            permit = breaker.admit_nowait()  # a stale reservation admits nothing
            if permit is None:
                self.inner.drop_reservation()  # refused without calling: free what ready() took
                raise breaker.refusal()
        generation = breaker.generation
        try:
            response: RespT = await self.inner(request)
        except BaseException as exc:
            breaker.settle(generation, permit, exc)
            raise
        breaker.settle(generation, permit, None)
        return response

    def statistics(self) -> CircuitBreakerStatistics:
        """Returns the breaker's state and counts (shared with other services, if it is shared)."""
        return self._breaker.statistics()

    def __repr__(self) -> str:
        return f"Circuit({self.inner!r}, {self._breaker!r})"


_DEFAULTS = (5, 30.0, None, 1)


@final
class CircuitBreakerLayer:
    """Wraps services in a `Circuit`: calls are refused for a while after failures in a row.

    Give the settings (each service this layer wraps gets a `CircuitBreaker` of its own) or
    ``breaker=`` (one `CircuitBreaker` shared by every service it is passed to: one circuit).
    The settings are `CircuitBreaker`'s.

    Args:
        failure_threshold: Failures in a row that open the circuit.
        recovery_time: Seconds the circuit stays open before it lets probes through.
        failure_on: What counts as a failure: exception classes, or a function of the error.
        half_open_calls: Probes let through at once while half-open.
        breaker: A shared `CircuitBreaker`, instead of the settings.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A setting is out of range, or settings are given with ``breaker``.

    Example:
        >>> model = ServiceBuilder().layer(CircuitBreakerLayer(5, 30.0)).service(step)
    """

    __slots__ = ("_breaker", "_settings")

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_time: float = 30.0,
        *,
        failure_on: ExceptionMatcher | None = None,
        half_open_calls: int = 1,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        settings = (failure_threshold, recovery_time, failure_on, half_open_calls)
        if breaker is not None:
            if not isinstance(breaker, CircuitBreaker):
                raise TypeError(f"breaker must be a CircuitBreaker, got {type(breaker).__name__}")
            if settings != _DEFAULTS:
                raise ValueError(
                    "CircuitBreakerLayer takes the settings or breaker=, not both; "
                    "the breaker has settings of its own"
                )
        else:
            CircuitBreaker(*settings[:2], failure_on=failure_on, half_open_calls=half_open_calls)
        self._settings = settings
        self._breaker = breaker

    def layer(self, inner: Service[ReqT, RespT]) -> Circuit[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `Circuit`."""
        breaker = self._breaker
        if breaker is None:
            threshold, recovery, failure_on, half_open = self._settings
            breaker = CircuitBreaker(
                threshold, recovery, failure_on=failure_on, half_open_calls=half_open
            )
        return Circuit(inner, breaker)

    def __repr__(self) -> str:
        if self._breaker is not None:
            return f"CircuitBreakerLayer(breaker={self._breaker!r})"
        threshold, recovery, _, half_open = self._settings
        return f"CircuitBreakerLayer({threshold}, {recovery}, half_open_calls={half_open})"
