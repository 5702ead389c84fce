"""The one place that reads anyio's private internals: its record of asyncio tasks' cancel scopes.

On asyncio, `Timeout` and the buffer's exit cancel a task natively (``Task.cancel``, counted
as ``asyncio.timeout`` counts it), which is much cheaper than an anyio scope per call. A native
cancellation would break through anyio's shielded scopes, so before cancelling they look at the
task's anyio scopes: anyio keeps, per asyncio task, its innermost cancel scope
(``anyio._backends._asyncio._task_states``), and each scope its parent, shield and deadline.

None of that is public. When a version of anyio no longer has it (see `scopes_readable`), the
callers take the public path instead, an `anyio.CancelScope` per call, which respects shields by
construction, and a `RuntimeWarning` says so once: slower, never wrong, never silent. Shield
detection is never dropped.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["READABLE", "innermost_scope", "scopes_readable", "task_state"]

_task_states: Any
_scope_class: Any
try:
    from anyio._backends._asyncio import CancelScope as _scope_class
    from anyio._backends._asyncio import _task_states
except ImportError:  # pragma: no cover - a future anyio (see the module docstring)
    _task_states = _scope_class = None

# what the callers read of a scope: the private ones, and the public ones next to them
_SCOPE_ATTRIBUTES = ("_shield", "_parent_scope", "_cancel_called", "shield", "cancel_called")
_warned = False


def _readable() -> bool:
    if _task_states is None or not hasattr(_task_states, "get"):
        return False  # pragma: no cover - a future anyio
    try:
        scope = _scope_class()
    except Exception:  # pragma: no cover - a future anyio
        return False
    return all(hasattr(scope, name) for name in _SCOPE_ATTRIBUTES) and hasattr(scope, "deadline")


# read at each use (tests set it to False to take the fallback)
READABLE = _readable()


def scopes_readable() -> bool:
    """Whether anyio's record of asyncio tasks' cancel scopes is there to read.

    When it is not, warns once (a `RuntimeWarning`): the caller then takes the public path.
    """
    global _warned
    if READABLE:
        return True
    if not _warned:
        _warned = True
        warnings.warn(
            "towerpy: this anyio version does not keep its asyncio tasks' cancel scopes where "
            "towerpy reads them (anyio._backends._asyncio._task_states); Timeout and Buffer "
            "fall back to an anyio CancelScope per call on asyncio (slower, same behaviour)",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


# anyio's record of a task, or None: ``task_state(task).cancel_scope`` is what
# `innermost_scope` returns, for the one caller on every request's path (a call saved)
task_state: Any = None if _task_states is None else _task_states.get


def innermost_scope(task: object) -> Any:
    """The innermost anyio cancel scope the asyncio ``task`` is in, or None.

    Only called once `scopes_readable` said yes.
    """
    state = _task_states.get(task)
    return None if state is None else state.cancel_scope
