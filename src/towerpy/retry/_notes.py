"""The notes retry adds to the errors it gives up on: one of each, however often an error recurs.

A service may raise one exception object again and again (a cached "service down" error). Each
time retry gives up on it, its notes say why; they replace the ones the same layer and policy
added the last time, instead of piling up for ever. Notes added by anything else are kept.
"""

from __future__ import annotations

__all__ = ["RetryNote", "add_note", "drop_notes"]


class RetryNote(str):
    """A note added by a retry layer or policy; ``owner`` is the ``id()`` of what added it."""

    owner: int


def add_note(error: BaseException, owner: object, text: str) -> None:
    """Adds ``text`` to the notes of ``error`` in place of those ``owner`` added before."""
    drop_notes(error, owner)
    note = RetryNote(text)
    note.owner = id(owner)
    error.add_note(note)


def drop_notes(error: BaseException, *owners: object) -> None:
    """Removes from ``error`` the notes that ``owners`` added to it before."""
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list) and notes:
        ids = {id(owner) for owner in owners}
        notes[:] = [note for note in notes if not (type(note) is RetryNote and note.owner in ids)]
