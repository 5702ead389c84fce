"""CircuitBreaker: the state a circuit breaker keeps, shareable between several services."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, final

import anyio

from .. import _observe
from .._backend import current_time
from .._failures import is_outage
from .._validate import check_exception_matcher, check_positive_int, check_seconds
from .._waiter import Permits
from ..errors import CircuitOpen

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._validate import ExceptionMatcher

__all__ = ["PASS", "CircuitBreaker", "CircuitBreakerStatistics", "CircuitState"]

CircuitState = Literal["closed", "open", "half_open"]

_CLOSED = 0
_OPEN = 1
_HALF_OPEN = 2
_NAMES: tuple[CircuitState, ...] = ("closed", "open", "half_open")

PASS = object()  # what a closed circuit admits a call with: no probe permit, nothing to give back


@dataclass(frozen=True, slots=True)
class CircuitBreakerStatistics:
    """What a circuit breaker has seen, and where it stands.

    Attributes:
        state: ``"closed"`` (calls pass), ``"open"`` (calls are refused) or ``"half_open"``
            (probes pass, other calls are refused).
        consecutive_failures: Failures in a row since the last success.
        successes: Calls that returned.
        failures: Calls that failed with an error ``failure_on`` counts.
        rejected: Calls refused with `CircuitOpen`.
        opened: How many times the circuit opened.
        retry_after: Seconds until an open circuit lets probes through; None unless open.
        probes_in_flight: Probe permits out (reserved or running) while half-open.
    """

    state: CircuitState
    consecutive_failures: int
    successes: int
    failures: int
    rejected: int
    opened: int
    retry_after: float | None
    probes_in_flight: int


def _retry_after(error: BaseException) -> float:
    asked = getattr(error, "retry_after", None)
    if isinstance(asked, bool) or not isinstance(asked, (int, float)):
        return 0.0
    return float(asked) if 0 <= asked < math.inf else 0.0


@final
class CircuitBreaker:
    """Counts failures in a row and opens the circuit: the state behind `CircuitBreakerLayer`.

    The circuit is **closed** at first: calls pass, and each failure that ``failure_on``
    counts adds one to a count of failures in a row, which a success sets back to 0. At
    ``failure_threshold`` failures in a row it **opens**: every call is refused with
    `CircuitOpen`, without reaching the service, for ``recovery_time`` seconds (or the
    failing error's ``retry_after``, if longer: a 429's ``Retry-After``). Then it is
    **half-open**: ``half_open_calls`` calls go through as probes, the others are refused;
    the first probe that succeeds closes the circuit, one that fails opens it again.

    An error ``failure_on`` does not count (a 400, an `Overloaded` from a limit below) and a
    cancelled call change nothing: they are neither failures nor successes, and a probe that
    ends so gives its permit to the next call.

    One breaker object passed to several layers (``CircuitBreakerLayer(breaker=...)``) gives
    them one circuit: the failures of any of them open it for all. Its clock is the event
    loop's (virtual in tests): use one breaker per event loop.

    Args:
        failure_threshold: Failures in a row that open the circuit (>= 1).
        recovery_time: Seconds the circuit stays open before it lets probes through (>= 0).
        failure_on: What counts as a failure: a tuple of exception classes, or a function of
            the exception. By default, errors that say the service is failing: a
            `RateLimited`, a `ProviderUnavailable` or any retryable `ProviderError`, a
            `TimeoutError` (`Elapsed`), a `ConnectionError`. Cancellation never counts.
        half_open_calls: Probes let through at once while half-open (>= 1).

    Raises:
        TypeError: An argument has the wrong type (``failure_on`` holds something that is not
            an exception class, or is an async function).
        ValueError: ``failure_threshold`` or ``half_open_calls`` is below 1, or
            ``recovery_time`` is negative or NaN.
    """

    __slots__ = (
        "_cause",
        "_consecutive",
        "_failure_threshold",
        "_failures",
        "_generation",
        "_half_open_calls",
        "_left_open",
        "_matches",
        "_open_until",
        "_opened",
        "_probes",
        "_recovery_time",
        "_rejected",
        "_state",
        "_successes",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_time: float = 30.0,
        *,
        failure_on: ExceptionMatcher | None = None,
        half_open_calls: int = 1,
    ) -> None:
        self._failure_threshold = check_positive_int("failure_threshold", failure_threshold)
        self._recovery_time = check_seconds("recovery_time", recovery_time)
        self._half_open_calls = check_positive_int("half_open_calls", half_open_calls)
        self._matches: Callable[[BaseException], bool] = (
            is_outage if failure_on is None else check_exception_matcher("failure_on", failure_on)
        )
        self._state = _CLOSED
        self._generation = 0  # moves on at every change of state: outcomes of older calls are stale
        self._consecutive = 0
        self._open_until = -math.inf
        self._probes: Permits | None = None
        self._left_open: anyio.Event | None = None
        self._cause = ""
        self._successes = self._failures = self._rejected = self._opened = 0

    # --- state --------------------------------------------------------------------------

    def _refresh(self) -> int:
        # open -> half-open happens when someone looks, not on a timer
        if self._state == _OPEN and current_time() >= self._open_until:
            self._enter(_HALF_OPEN)
        return self._state

    def _enter(self, state: int) -> None:
        if self._probes is not None:
            self._probes.close()  # waiters for a probe permit look again at the new state
            self._probes = None
        if self._left_open is not None:
            self._left_open.set()
            self._left_open = None
        self._state = state
        self._generation += 1
        if state == _HALF_OPEN:
            self._probes = Permits(self._half_open_calls)
        elif state == _CLOSED:
            self._consecutive = 0

    def _open(self, error: BaseException | None) -> None:
        wait = self._recovery_time
        if error is not None:
            wait = max(wait, _retry_after(error))
            self._cause = f"last: {type(error).__name__}"
        else:
            self._cause = "tripped by hand"
        self._enter(_OPEN)
        self._open_until = current_time() + wait
        self._opened += 1
        if _observe.circuit_open is not None:
            _observe.circuit_open("circuit_breaker", wait)

    @property
    def state(self) -> CircuitState:
        """``"closed"``, ``"open"`` or ``"half_open"``, as of now."""
        return _NAMES[self._refresh()]

    def trip(self) -> None:
        """Opens the circuit now, for ``recovery_time`` seconds (an operator's "stop sending")."""
        self._open(None)

    def reset(self) -> None:
        """Closes the circuit now and forgets the failures counted so far."""
        self._enter(_CLOSED)

    # --- admission ------------------------------------------------------------------------

    def admit_nowait(self) -> object | None:
        """Admits a call if the circuit lets it through now.

        Returns:
            `PASS` when closed; a probe permit (give it back with `give_back`) when half-open
            with one free; None when the call must be refused.
        """
        state = self._refresh()
        if state == _CLOSED:
            return PASS
        probes = self._probes
        if state == _HALF_OPEN and probes is not None and probes.take_nowait():
            return self._generation
        return None

    async def admit(self) -> object:
        """Waits until the circuit lets a call through, and admits it (see `admit_nowait`).

        A task cancelled while waiting holds no probe permit afterwards.
        """
        while True:
            state = self._refresh()
            if state == _CLOSED:
                return PASS
            probes = self._probes
            if state == _HALF_OPEN and probes is not None:
                generation = self._generation
                if await probes.take():  # False: the circuit closed or opened meanwhile
                    return generation
                continue
            if self._left_open is None:
                self._left_open = anyio.Event()
            with anyio.move_on_after(self._open_until - current_time()):
                await self._left_open.wait()

    def is_current(self, permit: object) -> bool:
        """Tells whether ``permit`` still admits a call: `PASS` when closed, a probe when half-open.

        A probe permit of an earlier half-open period admits nothing: the circuit has moved on.
        """
        state = self._refresh()
        if permit is PASS:
            return state == _CLOSED
        return state == _HALF_OPEN and permit == self._generation

    def give_back(self, permit: object) -> None:
        """Gives back a probe permit that was never used (a dropped reservation)."""
        probes = self._probes
        if permit is not PASS and permit == self._generation and probes is not None:
            probes.give()

    def refusal(self) -> CircuitOpen:
        """Counts a refused call; returns the `CircuitOpen` to raise for it."""
        self._rejected += 1
        state = self._refresh()
        if state == _OPEN:
            left = max(0.0, self._open_until - current_time())
            return CircuitOpen(
                f"circuit open after {self._consecutive} failures in a row ({self._cause}); "
                f"probes in {left:.3g}s",
                retry_after=left,
            )
        if state == _HALF_OPEN:
            return CircuitOpen(
                f"circuit half-open: its {self._half_open_calls} probe call(s) are in flight",
                retry_after=0.0,
            )
        return CircuitOpen("circuit closed again: try the call again", retry_after=0.0)

    # --- outcomes -------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The period of the circuit's state; a call remembers it to report its outcome."""
        return self._generation

    def settle(self, generation: int, permit: object, error: BaseException | None) -> None:
        """Records how a call admitted with ``permit`` in period ``generation`` ended.

        Args:
            generation: `generation` when the call was admitted.
            permit: What admitted it (`PASS` or a probe permit).
            error: What it raised, or None when it returned.
        """
        if error is None:
            outcome = 1
            self._successes += 1
        elif isinstance(error, Exception) and self._matches(error):
            outcome = -1
            self._failures += 1
        else:
            outcome = 0  # cancelled, or an error that says nothing about the service
        if generation != self._generation:
            return  # admitted before the circuit last changed: too old to change it again
        state = self._state
        if state == _CLOSED:
            if outcome > 0:
                self._consecutive = 0
            elif outcome < 0:
                self._consecutive += 1
                if self._consecutive >= self._failure_threshold:
                    self._open(error)
        elif state == _HALF_OPEN and permit is not PASS:
            if outcome > 0:
                self._enter(_CLOSED)
            elif outcome < 0:
                self._consecutive += 1
                self._open(error)
            else:
                self.give_back(permit)

    def statistics(self) -> CircuitBreakerStatistics:
        """Returns the state and the counts."""
        state = self._refresh()
        probes = self._probes
        return CircuitBreakerStatistics(
            state=_NAMES[state],
            consecutive_failures=self._consecutive,
            successes=self._successes,
            failures=self._failures,
            rejected=self._rejected,
            opened=self._opened,
            retry_after=max(0.0, self._open_until - current_time()) if state == _OPEN else None,
            probes_in_flight=(
                self._half_open_calls - int(probes.available) if probes is not None else 0
            ),
        )

    @property
    def failure_threshold(self) -> int:
        """Failures in a row that open the circuit."""
        return self._failure_threshold

    @property
    def recovery_time(self) -> float:
        """Seconds the circuit stays open, at least."""
        return self._recovery_time

    @property
    def half_open_calls(self) -> int:
        """Probes let through at once while half-open."""
        return self._half_open_calls

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(failure_threshold={self._failure_threshold}, "
            f"recovery_time={self._recovery_time}, half_open_calls={self._half_open_calls}, "
            f"state={_NAMES[self._state]!r})"
        )
