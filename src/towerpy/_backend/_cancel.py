"""How a granted call runs in its caller's task, so that the exit of the buffer can cancel it.

Leaving ``async with buffer:`` waits for the calls already granted; if the task leaving is
cancelled meanwhile, it cancels them, and their callers get `ServiceClosed`. That needs a handle
on each running call. An anyio cancel scope per call would do, but costs a few microseconds, as
much as the rest of the buffer: on trio a native scope is cheap; on asyncio the call's task is
cancelled natively and the cancellation counted, as ``asyncio.timeout`` does, so that it is told
apart from anyone else's (``Task.uncancel``). anyio's cancel scopes count native cancellations
the same way, so the two interoperate. A native cancellation would break through anyio's
shielded scopes, so a call inside one is cancelled only once the shield is gone.

The anyio scopes are read from anyio's private record of them (see `._anyio`): only on the
rare paths (the exit cancelling a call), never per call. Without that record, each call runs in
an anyio cancel scope instead (slower, same behaviour), and a warning says so.

`towerpy.buffer` uses this through `towerpy._backend`: `run_cancellable` and `cancel`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from . import _anyio
from ._running import current_task

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._types import Cancellable as Message

__all__ = ["cancel", "run_asyncio", "run_trio"]

RespT = TypeVar("RespT")
_FIRST_RECHECK = 0.001  # seconds before looking again at a call inside a shielded scope
_LAST_RECHECK = 0.01


async def run_asyncio(
    call: Callable[[Any], Awaitable[RespT]],
    message: Message,
    cancelled: Callable[[], BaseException],
) -> RespT:
    """Runs ``call(message.request)`` in the current task, cancellable by `cancel`.

    Raises:
        BaseException: ``cancelled()``, when `cancel` cancelled the call.
    """
    if not _anyio.READABLE:
        return await _run_in_anyio_scope(call, message, cancelled)
    task: Any = current_task()
    message.task = task
    message.cancelling = task.cancelling()
    try:
        result = await call(message.request)
    except asyncio.CancelledError as exc:
        if message.fired and task.uncancel() <= message.cancelling:
            if _outer_scope_cancelled(task):
                # the caller is being cancelled too: its own scope's cancellation, which anyio
                # delivers on the next loop cycle, takes over from ours
                await asyncio.sleep(0)
            raise cancelled() from exc
        raise  # someone else's cancellation (too): it goes on
    except BaseException:
        if message.fired:  # the call swallowed our cancellation: take the request back
            task.uncancel()
        raise
    finally:
        message.task = None
    if message.fired:
        task.uncancel()
    return result


def cancel(message: Message) -> None:
    """Cancels the call run for ``message``; nothing if it has not started."""
    if message.task is not None:
        _cancel_task(message, _FIRST_RECHECK)
    elif message.scope is not None and not message.fired:
        message.fired = True
        message.scope.cancel()  # a trio scope, or an anyio one (see _run_in_anyio_scope)


def _cancel_task(message: Message, recheck: float) -> None:
    task = message.task
    if task is None or message.fired:  # the call has ended, or is being cancelled already
        return
    if _shielded(task):
        # checked again shortly: a shield says when it ends to no one
        loop = asyncio.get_running_loop()
        loop.call_later(recheck, _cancel_task, message, min(2 * recheck, _LAST_RECHECK))
        return
    message.fired = True
    task.cancel()


class _Scope(Protocol):
    """A cancel scope, which swallows its own cancellation."""

    def cancel(self) -> None: ...

    def __enter__(self) -> object: ...

    def __exit__(self, *exc_info: object) -> bool: ...


def _shielded(task: Any) -> bool:
    """Tells whether the task sits in a shielded anyio scope.

    Any shield counts, the caller's own around its call included: code that asked not to be
    cancelled is not cancelled by the buffer either (the exit then waits for the call to end).
    """
    scope = _anyio.innermost_scope(task)
    while scope is not None:
        if scope._shield:
            return True
        scope = scope._parent_scope
    return False


def _outer_scope_cancelled(task: Any) -> bool:
    """Tells whether an anyio scope around the call is cancelled (up to the first shield).

    Called once the call has ended: the task's innermost scope is the one around the call.
    """
    scope = _anyio.innermost_scope(task)
    while scope is not None:
        if scope._cancel_called:
            return True
        if scope._shield:
            return False
        scope = scope._parent_scope
    return False


async def run_trio(
    call: Callable[[Any], Awaitable[RespT]],
    message: Message,
    cancelled: Callable[[], BaseException],
) -> RespT:
    """Runs ``call(message.request)`` in the current trio task, cancellable by `cancel`."""
    trio: Any = sys.modules["trio"]
    caught: BaseException | None = None
    scope: _Scope = trio.CancelScope()
    message.scope = scope
    with scope:
        try:
            return await call(message.request)
        except trio.Cancelled as exc:
            caught = exc
            raise
    # only reached when the scope caught its own cancellation, which trio does only when no
    # scope around it is cancelled too: cancel() cancelled it, and nobody else did
    raise cancelled() from caught


async def _run_in_anyio_scope(
    call: Callable[[Any], Awaitable[RespT]],
    message: Message,
    cancelled: Callable[[], BaseException],
) -> RespT:
    # anyio's internals are not there to read (see ._anyio): the public path, and a warning
    _anyio.scopes_readable()
    scope = message.scope = anyio.CancelScope()
    with scope:
        return await call(message.request)
    raise cancelled()  # as on trio, only when no scope around it is cancelled
