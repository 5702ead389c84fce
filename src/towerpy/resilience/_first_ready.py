"""Waiting for the first of several services to become ready, without polling.

Each endpoint's ``ready()`` runs in a task of its own, in `waiting_for_admission` (so that an
open circuit waits until it lets a probe through, instead of answering at once). The first to
return wins: its reservation, made in its task, is handed to the caller's task (`detach` /
`attach`: a reservation belongs to the task that made it), and the others are cancelled (a
cancelled ``ready()`` holds nothing). One that returns in the same step as the winner gives its
reservation back at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..lowlevel import attach, detach
from ._routing import waiting_for_admission

if TYPE_CHECKING:
    from ..lowlevel import Handoff
    from ._endpoint import Endpoint

__all__ = ["first_ready"]


async def first_ready(
    endpoints: tuple[Endpoint[Any, Any], ...], changed: anyio.Event
) -> Endpoint[Any, Any] | None:
    """Waits for the first of ``endpoints`` to be ready, or for ``changed`` to be set.

    Returns:
        The endpoint, its capacity reserved for the calling task; None when ``changed`` was
        set first (the endpoints changed: look again).

    Raises:
        Exception: The first error, when the ``ready()`` of every endpoint failed.
    """
    won: list[tuple[Endpoint[Any, Any], Handoff | None]] = []
    failed: list[Exception] = []
    try:
        async with anyio.create_task_group() as tg:
            scope = tg.cancel_scope
            for endpoint in endpoints:
                tg.start_soon(_race_ready, endpoint, won, failed, len(endpoints), scope)
            tg.start_soon(_race_change, changed, scope)
    except BaseException:
        for _, handoff in won:
            if handoff is not None:
                handoff.drop()  # won as this task was cancelled: nobody will use it
        raise
    if won:
        endpoint, handoff = won[0]
        attach(handoff)  # the reservation was made in the racing task: make it ours
        return endpoint
    if failed and len(failed) == len(endpoints):
        raise failed[0]
    return None


async def _race_ready(
    endpoint: Endpoint[Any, Any],
    won: list[tuple[Endpoint[Any, Any], Handoff | None]],
    failed: list[Exception],
    racing: int,
    scope: anyio.CancelScope,
) -> None:
    waiting_for_admission()  # an open circuit in this endpoint waits until it admits a call
    try:
        await endpoint.service.ready()
    except Exception as exc:
        failed.append(exc)
        if len(failed) == racing:
            scope.cancel()  # every endpoint failed: nothing left to wait for
        return
    if won:  # another endpoint was ready first
        endpoint.service.drop_reservation()
        return
    won.append((endpoint, detach()))  # the reservation belongs to this task: hand it over
    scope.cancel()


async def _race_change(changed: anyio.Event, scope: anyio.CancelScope) -> None:
    await changed.wait()
    scope.cancel()
