"""Argument checks: the one place where towerpy's rule for bad arguments is kept.

The rule: an argument of the wrong type raises `TypeError`, an argument of the right type with a
bad value raises `ValueError`, and either message names the argument and says what it must be,
which is the fix::

    limit must be an int >= 1, got str '3'      (TypeError)
    limit must be >= 1, got 0                   (ValueError)

Every check takes the argument's name first, as the caller knows it (``"max_in_flight"``, or
``"tool 'search': timeout"``), and returns the value it checked where that is useful (numbers as
a float, exception matchers as a predicate), so a constructor reads
``self._max = check_positive_int("max_in_flight", max_in_flight)``. A bool is never a number
here: ``True`` is refused where an int or a number of seconds is expected. An optional argument
is checked when it is given: ``if timeout is not None: check_seconds("timeout", timeout)``.

The checks are for construction time (constructors, layers, decorators, builder methods), not
for the hot path of a call.
"""

from __future__ import annotations

import inspect
import math
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from numbers import Real
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from ._callables import callable_name, is_async_callable

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ExceptionMatcher",
    "check_async_function",
    "check_callable",
    "check_cost",
    "check_exact_number",
    "check_exception_matcher",
    "check_instance",
    "check_int",
    "check_mapping",
    "check_member",
    "check_methods",
    "check_number",
    "check_plain_function",
    "check_positive_int",
    "check_positive_number",
    "check_seconds",
    "check_str",
]

EnumT = TypeVar("EnumT", bound=Enum)

ExceptionMatcher: TypeAlias = (
    "type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]"
)
"""What `check_exception_matcher` accepts: a class, a tuple of classes, or a predicate."""


def _got(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _then(hint: str) -> str:
    return f"; {hint}" if hint else ""


# ---- ints --------------------------------------------------------------------------------------


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Returns ``value`` if it is an int of at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an int (bools are refused too).
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {_got(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_positive_int(name: str, value: object) -> int:
    """Returns ``value`` if it is an int of at least 1.

    Raises:
        TypeError: ``value`` is not an int (bools are refused too).
        ValueError: ``value`` is below 1.
    """
    # check_int's body, not a call to it: Backoff.delay() runs this on every retry
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {_got(value)}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


# ---- numbers -----------------------------------------------------------------------------------


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    finite: bool = True,
    of: str = "",
    _types: type[Any] | tuple[type[Any], ...] = Real,
) -> float:
    """Returns ``value`` as a float if it is a real number in range.

    Args:
        name: The argument's name, for the message.
        value: The argument.
        minimum: The smallest value allowed.
        strict: Refuse ``minimum`` itself too (``> minimum`` rather than ``>= minimum``).
        finite: Refuse infinity.
        of: The unit, for the message: ``"seconds"`` gives "a number of seconds >= 0".

    Raises:
        TypeError: ``value`` is not a real number (bools are refused too).
        ValueError: ``value`` is NaN or out of range.
    """
    limit = f"{'>' if strict else '>='} {minimum:g}"
    expected = f"a {'finite ' if finite else ''}number{f' of {of}' if of else ''} {limit}"
    if isinstance(value, bool) or not isinstance(value, _types):
        raise TypeError(f"{name} must be {expected}, got {_got(value)}")
    real: Any = value  # a Real or a Decimal: both convert and compare
    try:
        number = float(real)
    except OverflowError:  # an int or Fraction past the floats: as good as infinite
        number = math.inf if real > 0 else -math.inf
    if math.isnan(number):
        raise ValueError(f"{name} must be {expected}, got NaN")
    if number < minimum or (strict and number == minimum) or (finite and number == math.inf):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return number


def check_positive_number(name: str, value: object) -> float:
    """Returns ``value`` as a float if it is a finite number above 0.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite, zero or negative.
    """
    return check_number(name, value, strict=True)


def check_cost(name: str, value: object) -> float:
    """Returns a cost in tokens: a finite number >= 0.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite or negative.
    """
    return check_number(name, value, of="tokens")


def check_seconds(
    name: str, value: object, *, positive: bool = False, finite: bool = False
) -> float:
    """Returns a duration in seconds as a float: a number >= 0.

    Args:
        name: The argument's name, for the message.
        value: The argument.
        positive: Refuse 0 too.
        finite: Refuse ``math.inf``; by default it is allowed and means no limit.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN or negative (or 0, or infinite, as asked).
    """
    return check_number(name, value, strict=positive, finite=finite, of="seconds")


def check_exact_number(name: str, value: object, *, positive: bool = False) -> Fraction:
    """Returns a finite number >= 0 exactly as the user wrote it: 0.3 is 3/10.

    Ints, floats, `Fraction` and `Decimal` are accepted; a float is read as its shortest
    decimal form, not as the binary fraction nearest to it.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is NaN, infinite or negative (or 0, when ``positive``).
    """
    check_number(name, value, strict=positive, _types=(Real, Decimal))
    if isinstance(value, int | Fraction | Decimal):
        return Fraction(value)
    # repr() is the shortest decimal that reads back as the same float: the number written
    return Fraction(repr(float(value)))  # type: ignore[arg-type]


# ---- functions, objects ------------------------------------------------------------------------


def check_callable(name: str, value: object, *, what: str = "a function") -> None:
    """Checks that ``value`` can be called (a sync or an async function, or a callable object).

    Raises:
        TypeError: ``value`` is not callable.
    """
    if not callable(value):
        raise TypeError(f"{name} must be {what}, got {_got(value)}")


def check_plain_function(name: str, fn: object, *, hint: str = "") -> None:
    """Checks that ``fn`` is a plain (synchronous) callable.

    Args:
        name: The argument's name, for the message.
        fn: The argument.
        hint: What to do instead, added to the message about an async function.

    Raises:
        TypeError: ``fn`` is not callable, or is an async function.
    """
    check_callable(name, fn)
    if is_async_callable(fn):
        raise TypeError(
            f"{name} must be a plain (synchronous) function, got the async function "
            f"{callable_name(fn)!r}{_then(hint)}"
        )


def check_async_function(name: str, fn: object, *, hint: str = "") -> None:
    """Checks that calling ``fn`` returns a coroutine (``async def``).

    Args:
        name: The argument's name, for the message.
        fn: The argument.
        hint: What to do instead, added to the message about a plain function.

    Raises:
        TypeError: ``fn`` is not callable, or is a plain function.
    """
    check_callable(name, fn, what="an async function (async def)")
    if not is_async_callable(fn):
        raise TypeError(
            f"{name} must be an async function (async def), got the plain function "
            f"{callable_name(fn)!r}{_then(hint)}"
        )


def check_instance(
    name: str, value: object, cls: type[Any] | tuple[type[Any], ...], what: str, *, hint: str = ""
) -> None:
    """Checks that ``value`` is an instance of ``cls`` (a class or a runtime-checkable protocol).

    Args:
        name: The argument's name, for the message.
        value: The argument.
        cls: What ``isinstance`` must accept.
        what: ``cls`` in words, for the message: ``"a ConcurrencyLimiter"``.
        hint: What to do instead, added to the message.

    Raises:
        TypeError: ``value`` is not an instance of ``cls``.
    """
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}{_then(hint)}")


def check_str(name: str, value: object, *, empty: bool = True) -> str:
    """Returns ``value`` if it is a str (a non-empty one, when ``empty`` is False).

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: ``value`` is empty and ``empty`` is False.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {_got(value)}")
    if not empty and not value:
        raise ValueError(f"{name} must be a non-empty str, got ''")
    return value


def check_member(name: str, value: object, enum: type[EnumT]) -> EnumT:
    """Returns ``value`` if it is a member of ``enum``.

    Raises:
        TypeError: ``value`` is not a member (a member's name or value is refused too).
    """
    if not isinstance(value, enum):
        members = ", ".join(f"{enum.__name__}.{member.name}" for member in enum)
        raise TypeError(f"{name} must be a {enum.__name__} ({members}), got {_got(value)}")
    return value


def check_mapping(name: str, value: object, *, what: str = "a mapping") -> None:
    """Checks that ``value`` is a mapping (an object with ``items()``, as `dict` has).

    Raises:
        TypeError: ``value`` has no ``items()``.
    """
    if not callable(getattr(value, "items", None)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")


def check_methods(name: str, value: object, methods: tuple[str, ...], what: str) -> None:
    """Checks that ``value`` is an object with these plain (synchronous) methods.

    This is how a duck-typed argument (a retry policy, a backoff, a budget) is checked.

    Args:
        name: The argument's name, for the message.
        value: The argument.
        methods: The names of the methods it must have.
        what: What it must be, in words: ``"a RetryBudget"``.

    Raises:
        TypeError: ``value`` is a class (not an instance), lacks one of ``methods``, or one of
            them is async.
    """
    if inspect.isclass(value):
        raise TypeError(
            f"{name} must be {what}, got the class {value.__name__}; create one first: "
            f"{value.__name__}(...)"
        )
    for method in methods:
        fn = getattr(value, method, None)
        if not callable(fn):
            raise TypeError(f"{name} must be {what}, got {type(value).__name__} without {method}()")
        if is_async_callable(fn):
            raise TypeError(
                f"{name}.{method}() must be a plain method, got the async {callable_name(fn)!r}"
            )


# ---- exception matchers ------------------------------------------------------------------------


def _instance_of(types: tuple[type[BaseException], ...]) -> Callable[[BaseException], bool]:
    # a closure, not an object with __call__: it is called on every failure, and costs half
    def matches(error: BaseException) -> bool:
        return isinstance(error, types)

    return matches


_MATCHER = "an exception class, a tuple of them, or a plain function of the exception"


def check_exception_matcher(name: str, value: object) -> Callable[[BaseException], bool]:
    """Checks an argument that selects exceptions, and returns it as a predicate.

    Such an argument (``RetryPolicy(retry_on=)``, and every other layer's argument that says
    which exceptions it acts on) is one exception class, a tuple of them (empty: none), or a
    plain function that takes the exception and returns whether it is selected.

    Args:
        name: The argument's name, for the message (``"retry_on"``).
        value: The argument.

    Returns:
        A function of the exception telling whether ``value`` selects it: for classes an
        ``isinstance`` check, and a function is returned as it is (so read its result with
        ``bool()``). It makes no exception for cancellation: the caller decides which
        exceptions reach it.

    Raises:
        TypeError: ``value`` is a class that is not an exception, a tuple holding something
            other than exception classes, something not callable, or an async function.
    """
    if isinstance(value, type):
        if issubclass(value, BaseException):  # a lone class: surely meant as a 1-tuple
            return _instance_of((value,))
        raise TypeError(f"{name} must be {_MATCHER}, got the class {value.__name__}")
    if isinstance(value, tuple):
        for entry in value:
            if not (isinstance(entry, type) and issubclass(entry, BaseException)):
                raise TypeError(f"{name} must hold exception classes only, got {entry!r} in it")
        return _instance_of(value)
    if not callable(value):
        raise TypeError(f"{name} must be {_MATCHER}, got {_got(value)}")
    if is_async_callable(value):
        raise TypeError(
            f"{name} must be a plain function that returns a bool, got the async function "
            f"{callable_name(value)!r}"
        )
    predicate: Callable[[BaseException], bool] = value
    return predicate
