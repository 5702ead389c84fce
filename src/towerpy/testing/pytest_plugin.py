"""Opt-in pytest plugin: every anyio test runs on asyncio and trio, in virtual time.

Enable it in your ``conftest.py``::

    pytest_plugins = ["towerpy.testing.pytest_plugin"]

It provides an ``anyio_backend`` fixture that runs each ``@pytest.mark.anyio`` test twice: on
asyncio with a `VirtualTimeEventLoop`, and on trio with ``MockClock(autojump_threshold=0)``
(trio only when it is installed). Time jumps whenever every task is blocked, so sleeps, timeouts
and rate limits take no real time and their results are exact.

Mark a test ``@pytest.mark.real_clock`` when it waits on real processes or sockets: a virtual
clock would jump past its timeouts while the outside world is still working.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from .virtual import VirtualTimeEventLoop

__all__ = ["anyio_backend", "pytest_configure"]

_BACKENDS = ["asyncio"] + (["trio"] if importlib.util.find_spec("trio") is not None else [])


def pytest_configure(config: pytest.Config) -> None:
    """Registers the ``real_clock`` marker."""
    config.addinivalue_line(
        "markers", "real_clock: run this anyio test on the real clock instead of virtual time"
    )


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Each backend, with a fresh virtual clock unless the test is marked ``real_clock``."""
    name: str = request.param
    if request.node.get_closest_marker("real_clock") is not None:
        return name, {}
    if name == "trio":
        from trio.testing import MockClock

        return name, {"clock": MockClock(autojump_threshold=0)}
    return name, {"loop_factory": VirtualTimeEventLoop}
