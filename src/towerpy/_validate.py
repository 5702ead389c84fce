"""Argument checks shared by the layers: each names the argument and says how to fix it."""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, TypeAlias

from ._service import callable_name, is_async_callable

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Matcher",
    "check_cost",
    "check_matcher",
    "check_plain_function",
    "check_positive_int",
    "check_positive_number",
    "check_seconds",
    "matches",
]

Matcher: TypeAlias = (
    "tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool]"
)


def check_positive_int(name: str, value: object) -> int:
    """Returns ``value`` if it is an int of at least 1.

    Raises:
        TypeError: ``value`` is not an int (bools are refused too).
        ValueError: ``value`` is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _real(name: str, value: object, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must be {expected}, got NaN")
    return number


def check_positive_number(name: str, value: object) -> float:
    """Returns ``value`` as a float if it is a finite number above 0.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite, zero or negative.
    """
    number = _real(name, value, "a finite number > 0")
    if not 0 < number < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_cost(name: str, value: object) -> float:
    """Returns a cost in tokens: a finite number >= 0.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite or negative.
    """
    number = _real(name, value, "a finite number of tokens >= 0")
    if not 0 <= number < math.inf:
        raise ValueError(f"{name} must be a finite number of tokens >= 0, got {value!r}")
    return number


def check_seconds(name: str, value: object) -> float:
    """Returns a duration in seconds: a number >= 0 (``math.inf`` means no limit).

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN or negative.
    """
    number = _real(name, value, "a number of seconds >= 0")
    if number < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return number


def check_plain_function(name: str, fn: object) -> None:
    """Checks that ``fn`` is a plain (synchronous) callable.

    Raises:
        TypeError: ``fn`` is not callable, or is an async function.
    """
    if not callable(fn):
        raise TypeError(f"{name} must be a function, got {type(fn).__name__} {fn!r}")
    if is_async_callable(fn):
        raise TypeError(
            f"{name} must be a plain (synchronous) function, got the async function "
            f"{callable_name(fn)!r}"
        )


def check_matcher(
    name: str, matcher: object
) -> tuple[tuple[type[BaseException], ...], Callable[[BaseException], bool] | None]:
    """Reads an exception matcher: a tuple of exception classes (or one class), or a predicate.

    Returns:
        The classes and None, or an empty tuple and the predicate.

    Raises:
        TypeError: ``matcher`` is neither: a tuple holding something that is not an exception
            class, a class that is not an exception, an async function, any other object.
    """
    if isinstance(matcher, type):
        if issubclass(matcher, BaseException):  # a lone class: surely meant as a 1-tuple
            return (matcher,), None
        raise TypeError(f"{name} needs exception classes, got the class {matcher.__name__}")
    if isinstance(matcher, tuple):
        for entry in matcher:
            if not (isinstance(entry, type) and issubclass(entry, BaseException)):
                raise TypeError(f"{name} needs a tuple of exception classes, got {entry!r} in it")
        return matcher, None
    if not callable(matcher):
        raise TypeError(
            f"{name} needs a tuple of exception classes or a function of the exception, "
            f"got {type(matcher).__name__}"
        )
    if is_async_callable(matcher):
        raise TypeError(
            f"{name} needs a plain function that returns a bool, got the async function "
            f"{callable_name(matcher)!r}"
        )
    return (), matcher


def matches(name: str, matcher: object) -> Callable[[BaseException], bool]:
    """Returns a predicate for a checked matcher (see `check_matcher`).

    Only `Exception` instances ever match: cancellation and other `BaseException` never do,
    whatever the matcher says.

    Raises:
        TypeError: As `check_matcher`.
    """
    classes, predicate = check_matcher(name, matcher)
    if predicate is not None:
        function = predicate

        def match(error: BaseException) -> bool:
            return isinstance(error, Exception) and bool(function(error))

        return match

    def match_classes(error: BaseException) -> bool:
        return isinstance(error, Exception) and isinstance(error, classes)

    return match_classes
