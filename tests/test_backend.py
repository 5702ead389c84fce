"""towerpy._backend: one dispatch point, and the public path when anyio's internals are gone."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pytest

from towerpy import _backend
from towerpy._backend import _anyio, _asyncio, _trio

from .test_buffer import (
    test_cancelling_the_exit_waits_for_a_shielded_section_of_a_running_call as buffer_shield,
)
from .test_timeout import (
    test_a_shielded_section_of_the_call_finishes_before_elapsed as timeout_shield,
)
from .test_timeout import test_a_timeout_inside_a_shielded_scope_still_fires as timeout_in_shield

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

pytestmark = pytest.mark.anyio


async def test_current_is_the_running_backend(anyio_backend: tuple[str, object]) -> None:
    backend = _backend.current()
    assert backend is (_trio if anyio_backend[0] == "trio" else _asyncio)
    assert anyio_backend[0] == backend.NAME


def test_both_backends_implement_the_same_operations() -> None:
    assert _asyncio.__all__ == _trio.__all__


def test_anyios_internals_are_readable_on_the_tested_anyio() -> None:
    # the pinned anyio range (pyproject.toml) is the one this holds for
    assert _anyio.READABLE
    assert _anyio.scopes_readable()


@pytest.fixture
def without_anyio_internals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Acts as a future anyio without them (its warning recorded, not raised)."""
    monkeypatch.setattr(_anyio, "READABLE", False)
    monkeypatch.setattr(_anyio, "_warned", False)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        yield


@pytest.mark.parametrize(
    "case",
    [timeout_shield, timeout_in_shield, buffer_shield],
    ids=["timeout-shielded-section", "timeout-in-shield", "buffer-exit-shielded-section"],
)
async def test_without_anyios_internals_shields_are_still_honoured(
    anyio_backend: tuple[str, object],
    without_anyio_internals: None,
    case: Callable[[], Awaitable[None]],
) -> None:
    await case()  # the same test, passing the same way, on the public path
    # it was taken, and said so (trio's scopes are its own: nothing to fall back from)
    assert _anyio._warned == (anyio_backend[0] == "asyncio")


def test_the_fallback_says_so_once(without_anyio_internals: None) -> None:
    assert not _anyio.scopes_readable()
    assert not _anyio.scopes_readable()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not _anyio.scopes_readable()
    assert not caught
    assert _anyio._warned
