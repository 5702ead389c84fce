"""Per-task reservations: how every limiting layer implements ``ready()`` and ``call()``.

The public face of this module is `towerpy.lowlevel`; read its docstring first.

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
- when its task ends, every reservation still HELD is dropped. The end of the task itself is
  watched, not the collection of the task object (a finished task may stay referenced for
  long: in a set of tasks, in a ``gather``): a done callback on asyncio, an instrument's
  ``task_exited`` hook on trio. A finalizer on the task object stays as a last resort for a
  task that is destroyed without ever ending; it may run in any thread, so it only queues the
  drop on the loop (the backend's ``threadsafe_scheduler``).

Load shedding: inside `shedding`, an acquisition made through this module that would have to
wait raises `Overloaded` instead (`LoadShed` uses it, so that limits whose capacity depends on
the request, which ``try_ready()`` cannot check, shed too).

The hot path is one ``ContextVar.get()`` for a task that never called ``ready()``.
"""

from __future__ import annotations

import functools
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

from . import _backend
from ._backend import current_task
from .errors import Overloaded

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection

__all__ = [
    "Handoff",
    "Reservation",
    "Shed",
    "attach",
    "detach",
    "drop",
    "held",
    "hold",
    "refuse_if_shedding",
    "reserve",
    "shedding",
    "take",
    "take_or_acquire",
    "take_or_acquire_nowait",
    "try_reserve",
    "wait_for_capacity",
]

TokenT = TypeVar("TokenT")


class Inner(Protocol):
    """What `reserve` and `try_reserve` ask of the inner service: any `Service` has it."""

    async def ready(self) -> None: ...

    async def try_ready(self) -> bool: ...


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

    def __repr__(self) -> str:
        state = ("held", "taken", "dropped")[self.state]
        return f"Reservation({self.token!r}, {state})"


def _drop_all(reservations: dict[object, Reservation[Any]]) -> None:
    # a list first: a release may wake code that reserves again in this very dict
    pending = list(reservations.values())
    reservations.clear()
    for reservation in pending:
        reservation.drop()


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


def _drop_if_any(reservations: dict[object, Reservation[Any]]) -> None:
    if reservations:
        _drop_all(reservations)


@final
class _Holder:
    """The reservations of one task; dropped when that task ends."""

    __slots__ = ("reservations", "task")

    def __init__(self, task: Any) -> None:
        self.task = weakref.ref(task)
        reservations: dict[object, Reservation[Any]] = {}
        self.reservations = reservations
        backend = _backend.current()
        backend.on_task_exit(
            task,
            functools.partial(_drop_if_any, reservations),
            "giving back the reservations of an ended task",
        )
        weakref.finalize(task, _drop_all_soon, backend.threadsafe_scheduler(), reservations)


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
    holder = _holder.get()
    if holder is None or key not in holder.reservations or holder.task() is not current_task():
        return
    holder.reservations.pop(key).drop()


@final
class Handoff:
    """Reservations taken from one task by `detach`, on their way to another.

    If no task ever `attach`es them (it was cancelled before it ran), they are dropped when
    this object is collected.
    """

    __slots__ = ("__weakref__", "_reservations", "_schedule")

    def __init__(self, reservations: dict[object, Reservation[Any]]) -> None:
        self._reservations = reservations
        self._schedule = _backend.current().threadsafe_scheduler()

    def __del__(self) -> None:
        # cheaper than a weakref.finalize per handoff (a buffer makes one per request); like
        # the task finalizers, it may run in any thread, so it only queues the drop on the loop
        if self._reservations:
            _drop_all_soon(self._schedule, self._reservations)

    def drop(self) -> None:
        """Gives every reservation of the handoff back now."""
        _drop_all(self._reservations)


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
    holder.reservations.clear()  # in place: the task's end hooks watch this very dict
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
            displaced = reservations.get(key)  # one per key: the task keeps the one handed over
            reservations[key] = reservation
            if displaced is not None:
                displaced.drop()
            attached.append(reservation)
    handoff._reservations.clear()
    return attached


# --- load shedding ------------------------------------------------------------------------


@final
class Shed(Overloaded):
    """Raised inside `shedding` where an acquisition would have had to wait.

    It is an `Overloaded`: the caller of a `LoadShed` sees the error it expects. A layer that
    spent capacity on the request before the refusal (tokens, say) gives it back when it sees
    this error: the request was never admitted.
    """


# (task, ids of keys): inside LoadShed.call, the task and the services that must not wait
_shedding: ContextVar[tuple[object, Collection[int], Any] | None] = ContextVar(
    "towerpy_shedding", default=None
)


def _is_shedding(key: object) -> bool:
    shedding = _shedding.get()
    return shedding is not None and id(key) in shedding[1] and shedding[0] is current_task()


def _shed() -> Shed:
    return Shed("service overloaded: the inner service is not ready")


def refuse_if_shedding(key: object) -> None:
    """Raises `Shed` when the current task is inside `shedding` on ``key``: it must not wait.

    For a layer that waits on capacity of its own making, outside the helpers below, once it
    knows that the capacity is not there now.
    """
    if _is_shedding(key):
        raise _shed()


async def wait_for_capacity(
    key: object,
    acquire: Callable[[], Awaitable[TokenT]],
    try_acquire: Callable[[], Awaitable[TokenT | None]] | None = None,
) -> TokenT:
    """The slow path of ``call()``, after `take_or_acquire_nowait` returned None: ``acquire()``.

    Inside `shedding` on ``key`` it must not wait: it asks ``try_acquire()`` instead (a remote
    backend answers that without waiting for anyone, where its ``acquire_nowait`` could only say
    "don't know"), and raises `Shed` when that takes nothing.

    Raises:
        Shed: Inside `shedding` on ``key``, and there is no capacity now.
    """
    if _is_shedding(key):
        token = None if try_acquire is None else await try_acquire()
        if token is None:
            raise _shed()
        return token
    return await acquire()


class shedding:
    """Within ``with`` this, acquisitions on some keys made by the current task never wait.

    Where `wait_for_capacity`, `take_or_acquire` or `reserve` would have to wait for capacity
    on a key whose ``id()`` is in ``keys``, they raise `Shed` (an `Overloaded`) instead. Tasks
    started inside the block are not affected, nor are other keys.

    One object may be entered by any number of tasks at once, and again inside its own block:
    make it once, use it on every call.

    Args:
        keys: The ``id()`` of each key that must not wait.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Collection[int]) -> None:
        self._keys = keys

    def __enter__(self) -> None:
        # the previous value rides along, so that leaving needs no per-entry token
        _shedding.set((current_task(), self._keys, _shedding.get()))

    def __exit__(self, *exc_info: object) -> None:
        state = _shedding.get()
        _shedding.set(None if state is None else state[2])


# --- the openings of ready() and call() -----------------------------------------------------


def take_or_acquire_nowait(
    key: object, acquire_nowait: Callable[[], TokenT | None]
) -> TokenT | None:
    """The opening of ``call()``: the capacity for the call about to run, if it needs no wait.

    Returns:
        The token of the task's reservation on ``key`` when it holds one, else what
        ``acquire_nowait()`` took; None when capacity must be waited for: then
        ``await wait_for_capacity(key, acquire, try_acquire)``. The caller owns the capacity
        returned and gives it back itself.
    """
    holder = _holder.get()
    if holder is not None and key in holder.reservations and holder.task() is current_task():
        reservation = holder.reservations.pop(key)
        if reservation.state == _HELD:
            reservation.state = _TAKEN
            return reservation.token  # type: ignore[no-any-return]
    return acquire_nowait()


async def take_or_acquire(
    key: object,
    acquire: Callable[[], Awaitable[TokenT]],
    acquire_nowait: Callable[[], TokenT | None] | None = None,
    try_acquire: Callable[[], Awaitable[TokenT | None]] | None = None,
) -> TokenT:
    """The opening of ``call()``: the task's reservation on ``key``, or capacity acquired now.

    ``acquire_nowait``, when given, is tried before ``acquire``: a synchronous fast path that
    returns None when ``acquire`` must wait. ``try_acquire`` is what `wait_for_capacity` asks
    under load shedding.

    Returns:
        The token; the caller owns the capacity and gives it back itself.

    Raises:
        Shed: ``acquire`` would have had to wait inside `shedding` on ``key``.
    """
    reservation = take(key)
    if reservation is not None:
        return reservation.token  # type: ignore[no-any-return]
    if acquire_nowait is not None:
        token = acquire_nowait()
        if token is not None:
            return token
    return await wait_for_capacity(key, acquire, try_acquire)


async def reserve(
    key: object,
    acquire: Callable[[], Awaitable[TokenT]],
    release: Callable[[TokenT], object],
    inner: Inner | None = None,
    acquire_nowait: Callable[[], TokenT | None] | None = None,
    try_acquire: Callable[[], Awaitable[TokenT | None]] | None = None,
) -> None:
    """Implements ``ready()`` for a service with capacity of its own, wrapping ``inner``.

    Reserves the service's capacity (unless the task already holds it), then waits for
    ``inner`` to be ready. If that fails or is cancelled, the service's reservation is given
    back too, so a task cancelled anywhere in ``ready()`` holds nothing afterwards.
    ``acquire_nowait``, when given, is tried first: a synchronous fast path returning None when
    ``acquire`` must run. ``try_acquire`` is what `wait_for_capacity` asks under shedding.

    Raises:
        Shed: ``acquire`` would have had to wait inside `shedding` on ``key``.
    """
    if held(key) is None:
        token = None if acquire_nowait is None else acquire_nowait()
        if token is None:
            token = await wait_for_capacity(key, acquire, try_acquire)
        hold(key, token, release)
    if inner is None:
        return
    try:
        await inner.ready()
    except BaseException:
        drop(key)
        raise


async def try_reserve(
    key: object,
    try_acquire: Callable[[], Awaitable[TokenT | None]],
    release: Callable[[TokenT], object],
    inner: Inner | None = None,
    acquire_nowait: Callable[[], TokenT | None] | None = None,
) -> bool:
    """Implements ``try_ready()`` like `reserve`, with ``try_acquire`` returning None when full.

    ``acquire_nowait``, when given, is tried first, as in `reserve`.

    Returns:
        True when the service's capacity (and the inner service's) is reserved for the task's
        next ``call()``; False, holding nothing, when either would have to wait.
    """
    if held(key) is None:
        token = None if acquire_nowait is None else acquire_nowait()
        if token is None:
            token = await try_acquire()
            if token is None:
                return False
        hold(key, token, release)
    if inner is None:
        return True
    try:
        ready = await inner.try_ready()
    except BaseException:
        drop(key)
        raise
    if not ready:
        drop(key)
    return ready
