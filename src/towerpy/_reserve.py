"""Per-task reservations: how every limiting layer implements ``ready()`` and ``call()``.

A reservation is capacity (a concurrency permit, rate tokens, a queue slot) that ``ready()``
took for the calling task's next ``call()``. Each task keeps its reservations in a holder of its
own, found through a context variable. Tasks started later inherit that variable, so every
lookup checks that the holder belongs to the current task: a reservation is never seen, used or
extended by any task but the one that made it (hand it over explicitly with `detach` and
`attach`).

Lifecycle of a reservation:

- `hold` records it (HELD);
- `take` hands it to ``call()`` (TAKEN): the call owns the capacity now and gives it back itself;
- `drop` gives it back unused (DROPPED), e.g. when ``ready()`` is cancelled further in;
- when its task ends, every reservation still HELD is dropped. The hook is a finalizer on the
  native task object, which both backends free as soon as the task ends; a finalizer may run in
  any thread and at any point of the event loop's own code, so it only queues the drop on the
  loop (`towerpy._runtime.threadsafe_scheduler`).

The hot path is one ``ContextVar.get()`` for a task that never called ``ready()``.
"""

from __future__ import annotations

import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._runtime import current_task, threadsafe_scheduler

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._service import Service

__all__ = [
    "Handoff",
    "Reservation",
    "attach",
    "detach",
    "drop",
    "held",
    "hold",
    "reserve",
    "take",
    "try_reserve",
]

TokenT = TypeVar("TokenT")

_HELD = 0
_TAKEN = 1
_DROPPED = 2


@final
class Reservation(Generic[TokenT]):
    """Capacity taken by ``ready()`` and not yet used by ``call()``.

    Attributes:
        token: Whatever the capacity's owner needs to give it back (a permit, a cost).
    """

    __slots__ = ("_release", "state", "token")

    def __init__(self, token: TokenT, release: Callable[[TokenT], object]) -> None:
        self.token = token
        self.state = _HELD
        self._release = release

    def drop(self) -> None:
        """Gives the capacity back now, unless it was already taken or dropped."""
        if self.state == _HELD:
            self.state = _DROPPED
            self._release(self.token)


def _drop_all(reservations: dict[object, Reservation[Any]]) -> None:
    for reservation in reservations.values():
        reservation.drop()
    reservations.clear()


def _drop_all_soon(
    schedule: Callable[[Callable[[], object]], object],
    reservations: dict[object, Reservation[Any]],
) -> None:
    if not reservations:
        return
    try:
        schedule(lambda: _drop_all(reservations))
    except Exception:  # the loop is gone: nothing can run on it any more, so drop them here
        _drop_all(reservations)


@final
class _Holder:
    """The reservations of one task; dropped when that task ends."""

    __slots__ = ("reservations", "task")

    def __init__(self, task: object) -> None:
        self.task = weakref.ref(task)
        self.reservations: dict[object, Reservation[Any]] = {}
        weakref.finalize(task, _drop_all_soon, threadsafe_scheduler(), self.reservations)


_holder: ContextVar[_Holder | None] = ContextVar("towerpy_reservations", default=None)


def _own_holder() -> _Holder | None:
    holder = _holder.get()
    if holder is None or holder.task() is not current_task():
        return None  # none, or inherited from the task that started this one
    return holder


def held(key: object) -> Reservation[Any] | None:
    """Returns the current task's unused reservation on ``key``, or None."""
    holder = _holder.get()
    # the owner check costs a task lookup: only make it when there is something to find
    if holder is None or key not in holder.reservations or holder.task() is not current_task():
        return None
    reservation = holder.reservations[key]
    return reservation if reservation.state == _HELD else None


def take(key: object) -> Reservation[Any] | None:
    """Hands the current task's reservation on ``key`` to the call about to run, if it has one.

    Returns:
        The reservation (its capacity belongs to the caller now, who must give it back), or
        None when the task holds none and must acquire capacity itself.
    """
    holder = _holder.get()
    if holder is None:  # the hot path: this task never reserved anything
        return None
    if key not in holder.reservations or holder.task() is not current_task():
        return None  # nothing on this key, or the holder is the task's parent's
    reservation = holder.reservations.pop(key)
    if reservation.state != _HELD:
        return None
    reservation.state = _TAKEN
    return reservation


def _own_or_new_holder() -> _Holder:
    holder = _own_holder()
    if holder is None:
        holder = _Holder(current_task())
        _holder.set(holder)
    return holder


def hold(key: object, token: TokenT, release: Callable[[TokenT], object]) -> Reservation[TokenT]:
    """Records capacity just acquired as the current task's reservation on ``key``."""
    reservation = Reservation(token, release)
    _own_or_new_holder().reservations[key] = reservation
    return reservation


def drop(key: object) -> None:
    """Gives back the current task's unused reservation on ``key``, if it has one."""
    holder = _own_holder()
    if holder is not None:
        reservation = holder.reservations.pop(key, None)
        if reservation is not None:
            reservation.drop()


@final
class Handoff:
    """Reservations taken from one task by `detach`, on their way to another.

    If no task ever `attach`es them (it was cancelled before it ran), they are dropped when
    this object is collected.
    """

    __slots__ = ("__weakref__", "_reservations", "_schedule")

    def __init__(self, reservations: dict[object, Reservation[Any]]) -> None:
        self._reservations = reservations
        self._schedule = threadsafe_scheduler()

    def __del__(self) -> None:
        # cheaper than a weakref.finalize per handoff (a buffer makes one per request); like
        # the task finalizers, it may run in any thread, so it only queues the drop on the loop
        if self._reservations:
            _drop_all_soon(self._schedule, self._reservations)


def detach() -> Handoff | None:
    """Takes the current task's reservations away from it, to `attach` them to another task.

    A buffer's worker uses this: it waits for the inner service to be ready, then hands the
    reservation to the caller whose request is next, which makes the call in its own task and
    must find the reservation there; the worker's next ``ready()`` must reserve anew.

    Returns:
        The reservations, or None when the task holds none.
    """
    holder = _own_holder()
    if holder is None or not holder.reservations:
        return None
    moved = dict(holder.reservations)
    holder.reservations.clear()  # in place: the task's finalizer watches this very dict
    return Handoff(moved)


def attach(handoff: Handoff | None) -> list[Reservation[Any]]:
    """Makes the reservations of ``handoff`` the current task's own.

    A reservation the task already held on the same key is given back: a task holds one per key.

    Returns:
        The reservations attached, so that whoever attached them can drop what was left unused.
    """
    if handoff is None or not handoff._reservations:
        return []
    reservations = _own_or_new_holder().reservations
    attached = []
    for key, reservation in handoff._reservations.items():
        if reservation.state == _HELD:
            displaced = reservations.get(key)
            reservations[key] = reservation
            if displaced is not None:
                displaced.drop()
            attached.append(reservation)
    handoff._reservations.clear()
    return attached


async def reserve(
    key: object,
    acquire: Callable[[], Awaitable[TokenT]],
    release: Callable[[TokenT], object],
    inner: Service[Any, Any],
    acquire_nowait: Callable[[], TokenT | None] | None = None,
) -> None:
    """Implements ``ready()`` for a layer with capacity of its own, wrapping ``inner``.

    Reserves the layer's capacity (unless the task already holds it), then waits for ``inner``
    to be ready. If that fails or is cancelled, the layer's reservation is given back too, so a
    task cancelled anywhere in ``ready()`` holds nothing afterwards. ``acquire_nowait``, when
    given, is tried first: a synchronous fast path returning None when ``acquire`` must run.
    """
    if held(key) is None:
        token = None if acquire_nowait is None else acquire_nowait()
        hold(key, await acquire() if token is None else token, release)
    try:
        await inner.ready()
    except BaseException:
        drop(key)
        raise


async def try_reserve(
    key: object,
    try_acquire: Callable[[], Awaitable[TokenT | None]],
    release: Callable[[TokenT], object],
    inner: Service[Any, Any],
    acquire_nowait: Callable[[], TokenT | None] | None = None,
) -> bool:
    """Implements ``try_ready()`` like `reserve`, with ``try_acquire`` returning None when full.

    ``acquire_nowait``, when given, is tried first, as in `reserve`.
    """
    if held(key) is None:
        token = None if acquire_nowait is None else acquire_nowait()
        if token is None:
            token = await try_acquire()
            if token is None:
                return False
        hold(key, token, release)
    try:
        ready = await inner.try_ready()
    except BaseException:
        drop(key)
        raise
    if not ready:
        drop(key)
    return ready
