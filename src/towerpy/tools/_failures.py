"""What a batch makes of failures: the model's message, and what a raised error carries."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .. import _backend
from ..errors import ToolError, WaitElapsed

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._batch import Batch
    from .models import ToolInvocation, ToolOutput

__all__ = [
    "attach_outcomes",
    "describe_failure",
    "replace_note",
    "report_threads",
    "stray_cancellation",
]

_MESSAGE_LIMIT = 1000  # characters of an error message shown to the model
_NOTE = "towerpy tool batch:"  # starts every note a batch adds to an exception
_NAMES_SHOWN = 5  # failed or still-running invocations a note names


def describe_failure(invocation: ToolInvocation, error: Exception) -> str:
    """Returns the short message a model reads when ``invocation`` failed with ``error``.

    It never raises: an exception whose ``str()`` fails is described by its type alone.
    """
    name = invocation.name
    if isinstance(error, TimeoutError):
        seconds = getattr(error, "seconds", None)
        if isinstance(error, WaitElapsed) and isinstance(seconds, int | float):
            return (
                f"tool {name!r} did not start: it waited {seconds:g} seconds for capacity "
                f"(other calls held its limit); try it again later"
            )
        if isinstance(seconds, int | float):
            return f"tool {name!r} timed out after {seconds:g} seconds"
        return f"tool {name!r} timed out"
    kind = type(error).__name__
    try:
        detail = str(error)
    except Exception as unprintable:  # a broken __str__ must not lose the output
        detail = f"(its message could not be read: {type(unprintable).__name__})"
        text = f"tool {name!r} failed: {kind} {detail}"
    else:
        if isinstance(error, ToolError):
            text = detail  # already says which tool and what to send instead
        elif detail:
            text = f"tool {name!r} failed: {kind}: {detail}"
        else:
            text = f"tool {name!r} failed: {kind}"
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def stray_cancellation(error: BaseException) -> bool:
    """Tells a cancellation exception that no cancellation of this task caused."""
    return _backend.current().stray_cancellation(error)


def replace_note(error: BaseException, prefix: str, note: str) -> None:
    """Adds ``prefix note`` to ``error``, in place of any earlier note starting with ``prefix``.

    One note per kind: an exception object raised again and again keeps one, the latest.
    """
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [n for n in notes if not (isinstance(n, str) and n.startswith(prefix))]
    error.add_note(f"{prefix} {note}")


def _replace_note(error: BaseException, note: str) -> None:
    replace_note(error, _NOTE, note)


def attach_outcomes(
    error: Exception,
    invocations: Sequence[ToolInvocation],
    outputs: list[Any],
    errors: dict[int, Exception],
) -> None:
    """Attaches every outcome of a `JoinPolicy.JOIN_ALL` batch to the error it raises."""
    outcomes: list[ToolOutput | Exception] = [
        errors.get(index, output) for index, output in enumerate(outputs)
    ]
    # a class with __slots__ and no __dict__ cannot take the attribute: the note stays
    with contextlib.suppress(AttributeError, TypeError):
        error.tool_outcomes = outcomes  # type: ignore[attr-defined]
    failed = [
        f"{invocations[i].name!r} (id {invocations[i].id!r}): {type(e).__name__}"
        for i, e in sorted(errors.items())
    ]
    shown = ", ".join(failed[:_NAMES_SHOWN]) + (", …" if len(failed) > _NAMES_SHOWN else "")
    _replace_note(
        error,
        f"{len(failed)} of {len(outcomes)} invocations failed (JOIN_ALL): {shown}; "
        f"this is the earliest in request order; every outcome, in order, is in .tool_outcomes",
    )


def report_threads(error: Exception, batch: Batch) -> None:
    """Names, in a note on ``error``, the worker threads the batch left running."""
    running = batch.running_threads()
    if not running:
        return
    shown = ", ".join(map(repr, running[:_NAMES_SHOWN])) + (
        ", …" if len(running) > _NAMES_SHOWN else ""
    )
    _replace_note(
        error,
        f"{len(running)} worker thread(s) of cancelled sync tools were still running "
        f"when the batch raised ({shown}); Python cannot stop a thread: each keeps its "
        f"ThreadLimiter slot until its function returns",
    )
