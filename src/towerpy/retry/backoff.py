"""How long to wait between tries: the `Backoff` protocol and its two implementations."""

from __future__ import annotations

import math
import random
from typing import Protocol, final, runtime_checkable

from .._validate import check_instance, check_number, check_positive_int, check_seconds

__all__ = ["Backoff", "ConstantBackoff", "ExponentialBackoff"]


@runtime_checkable
class Backoff(Protocol):
    """Says how long to wait after a failed try, before the next one."""

    def delay(self, attempt: int) -> float:
        """Returns the seconds to wait after try number ``attempt`` (from 1) failed."""
        ...


@final
class ExponentialBackoff:
    """Waits ``base``, then ``base * factor``, ``base * factor**2``… up to ``max_delay``.

    After the n-th failed try the wait is ``min(max_delay, base * factor**(n - 1))``. With
    ``jitter`` (the default) the wait is instead a uniform draw between 0 and that value ("full
    jitter"), so clients that failed together do not retry together.

    Args:
        base: The first wait, in seconds.
        factor: How much each wait grows over the previous one (at least 1).
        max_delay: The longest wait, in seconds.
        jitter: Draw each wait uniformly from ``[0, wait]``.
        rng: The random source of the jitter. Pass ``random.Random(seed)`` for waits that are
            the same on every run (tests); by default each backoff seeds its own from the OS.

    Raises:
        TypeError: ``base``, ``factor`` or ``max_delay`` is not a number, or ``rng`` not a
            ``random.Random``.
        ValueError: ``base`` or ``max_delay`` is negative or not finite, or ``factor`` is
            below 1.
    """

    __slots__ = ("_base", "_factor", "_jitter", "_max_delay", "_rng")

    def __init__(
        self,
        base: float = 0.1,
        factor: float = 2.0,
        max_delay: float = 30.0,
        jitter: bool = True,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._base = check_seconds("base", base, finite=True)
        self._factor = check_number("factor", factor, minimum=1)  # waits never shrink
        self._max_delay = check_seconds("max_delay", max_delay, finite=True)
        self._jitter = bool(jitter)
        if rng is not None:
            check_instance("rng", rng, random.Random, "a random.Random")
        self._rng = rng if rng is not None else random.Random()

    def delay(self, attempt: int) -> float:
        """Returns the seconds to wait after try number ``attempt`` (from 1) failed.

        Raises:
            TypeError: ``attempt`` is not an int.
            ValueError: ``attempt`` is below 1.
        """
        check_positive_int("attempt", attempt)
        if self._base == 0.0:
            return 0.0
        try:
            grown = self._base * self._factor ** (attempt - 1)
        except OverflowError:  # far past max_delay anyway
            grown = math.inf
        cap = min(self._max_delay, grown)
        return self._rng.uniform(0.0, cap) if self._jitter else cap

    @property
    def base(self) -> float:
        """The first wait, in seconds (before jitter)."""
        return self._base

    @property
    def factor(self) -> float:
        """How much each wait grows over the previous one."""
        return self._factor

    @property
    def max_delay(self) -> float:
        """The longest wait, in seconds."""
        return self._max_delay

    @property
    def jitter(self) -> bool:
        """Whether each wait is drawn uniformly from ``[0, wait]``."""
        return self._jitter

    def __repr__(self) -> str:
        return (
            f"ExponentialBackoff(base={self._base}, factor={self._factor}, "
            f"max_delay={self._max_delay}, jitter={self._jitter})"
        )


@final
class ConstantBackoff:
    """Waits the same number of seconds after every failed try (0: retry at once).

    Args:
        delay: The wait, in seconds.

    Raises:
        TypeError: ``delay`` is not a number.
        ValueError: ``delay`` is negative or not finite.
    """

    __slots__ = ("_delay",)

    def __init__(self, delay: float) -> None:
        self._delay = check_seconds("delay", delay, finite=True)

    def delay(self, attempt: int) -> float:
        """Returns the constant wait, whatever ``attempt`` (from 1) failed.

        Raises:
            TypeError: ``attempt`` is not an int.
            ValueError: ``attempt`` is below 1.
        """
        check_positive_int("attempt", attempt)
        return self._delay

    def __repr__(self) -> str:
        return f"ConstantBackoff({self._delay})"
