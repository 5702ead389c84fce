"""Readiness for a router: a ready() that waits for a refusing service to admit calls again.

A service that refuses calls for a while (a circuit breaker whose circuit is open) answers
``ready()`` at once, so that a caller's ``await service(request)`` fails fast with
`CircuitOpen` instead of waiting out the recovery time. A `Balance` that waits for the first
of its endpoints to become ready needs the other answer: wait until the endpoint would accept a
call. It runs its waits inside `waiting_for_admission`, and a refusing service reads
`wants_admission` to decide which answer to give.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["waiting_for_admission", "wants_admission"]

_waiting: ContextVar[bool] = ContextVar("towerpy_waiting_for_admission", default=False)


def waiting_for_admission() -> None:
    """Marks the current task as one whose ``ready()`` calls wait for refusing services.

    Called at the start of a task made for that wait alone (the tasks it starts inherit it).
    """
    _waiting.set(True)


def wants_admission() -> bool:
    """Tells whether ``ready()`` in this task must wait until a refusing service admits calls."""
    return _waiting.get()
