"""What error messages and argument checks need to know about a callable."""

from __future__ import annotations

import functools
import inspect

__all__ = ["callable_name", "is_async_callable"]


def is_async_callable(fn: object) -> bool:
    """Tells whether calling ``fn`` returns a coroutine.

    True for ``async def`` functions, partials of them, and objects with ``async def __call__``.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the type's, not the instance's
    return (
        not inspect.isfunction(fn)
        and not inspect.ismethod(fn)
        and inspect.iscoroutinefunction(call)
    )


def callable_name(fn: object) -> str:
    """Returns a name for ``fn`` fit for an error message."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else type(fn).__name__
