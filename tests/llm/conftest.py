from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .fake_provider import FakeProvider, InProcessProvider

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A local HTTP server on 127.0.0.1, stopped (and its hanging handlers released) after."""
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def in_process() -> InProcessProvider:
    """An in-process fake answered through an httpx MockTransport, for tests in virtual time."""
    return InProcessProvider()
