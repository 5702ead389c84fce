"""What the workflows share: checking their steps, entering them, naming them in errors."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .._service import Service
from ..tools._failures import replace_note
from ..tools._join import JoinPolicy

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType
    from typing import Self

__all__ = [
    "EntersSteps",
    "Steps",
    "check_policy",
    "check_service",
    "check_steps",
    "note_failures",
    "short_repr",
]

_REPR_LIMIT = 60  # characters of a step's repr in an error message
_NAMES_SHOWN = 5  # failed steps a note names


def check_steps(who: str, steps: Sequence[object]) -> tuple[Service[Any, Any], ...]:
    """Returns ``steps`` if there is at least one and each is a `Service`.

    Raises:
        ValueError: No step.
        TypeError: A step is not a service (the message says which).
    """
    if not steps:
        raise ValueError(f"{who} needs at least one step (a Service)")
    return tuple(check_service(f"{who} step {i}", step) for i, step in enumerate(steps))


def check_service(what: str, value: object) -> Service[Any, Any]:
    """Returns ``value`` if it is a `Service`.

    Raises:
        TypeError: It is not (the message says what ``what`` must be).
    """
    if not isinstance(value, Service):
        hint = " (wrap an async function in service_fn)" if callable(value) else ""
        raise TypeError(
            f"{what} must be a Service, got {type(value).__name__} {short_repr(value)}{hint}"
        )
    return value


def check_policy(policy: object) -> JoinPolicy:
    """Returns ``policy`` if it is a `JoinPolicy`.

    Raises:
        TypeError: It is not.
    """
    if not isinstance(policy, JoinPolicy):
        raise TypeError(f"policy must be a JoinPolicy (e.g. JoinPolicy.JOIN_ALL), got {policy!r}")
    return policy


def short_repr(value: object) -> str:
    """``repr(value)``, cut to a length fit for an error message."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the error being reported
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 1] + "…"


def note_failures(
    error: BaseException, who: str, names: list[str], total: int, noun: str, attribute: str
) -> None:
    """Notes on ``error`` which of a `JoinPolicy.JOIN_ALL` run's jobs failed."""
    shown = ", ".join(names[:_NAMES_SHOWN]) + (", …" if len(names) > _NAMES_SHOWN else "")
    where = f"; every outcome, in order, is in .{attribute}" if attribute else ""
    replace_note(
        error,
        f"towerpy {who}:",
        f"{len(names)} of {total} {noun} failed (JOIN_ALL): {shown}; this is the earliest in "
        f"{noun[:-1]} order{where}",
    )


class Steps:
    """Enters and exits a workflow's distinct steps, as `Middleware` does its inner service."""

    __slots__ = ("_stacks", "services")

    def __init__(self, services: Sequence[Service[Any, Any]]) -> None:
        distinct: dict[int, Service[Any, Any]] = {}
        for service in services:
            distinct.setdefault(id(service), service)  # a step used twice is entered once
        self.services = tuple(distinct.values())
        self._stacks: list[contextlib.AsyncExitStack] = []

    async def enter(self) -> None:
        """Enters every step, in order; exits those entered if one fails."""
        async with contextlib.AsyncExitStack() as stack:
            for service in self.services:
                await stack.enter_async_context(service)
            self._stacks.append(stack.pop_all())

    async def exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Exits the steps entered by the latest `enter`, in reverse order."""
        if self._stacks:
            await self._stacks.pop().__aexit__(exc_type, exc, tb)


class EntersSteps:
    """A workflow's lifecycle: entering it enters its distinct steps, exiting exits them.

    Mixed in ahead of `Service` by each workflow, which keeps its `Steps` in ``_steps``.
    """

    __slots__ = ()
    _steps: Steps

    async def __aenter__(self) -> Self:
        await self._steps.enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._steps.exit(exc_type, exc, tb)
