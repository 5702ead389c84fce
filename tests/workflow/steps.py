"""A recording step service for the workflow tests: when each call started, ended, was cancelled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from towerpy import Service

if TYPE_CHECKING:
    from collections.abc import Callable


class Boom(Exception):
    pass


class Log:
    """What every step of one test did, in order, with the virtual time of each event."""

    def __init__(self) -> None:
        self.t0 = anyio.current_time()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.failed: list[str] = []
        self.cancelled: list[str] = []
        self.times: dict[str, tuple[float, float]] = {}
        self.running = 0
        self.peak = 0

    def now(self) -> float:
        return anyio.current_time() - self.t0


class Step(Service[Any, Any]):
    """Sleeps ``delay`` (or ``delay(request)``), then fails or returns ``fn(request)``.

    Each call is logged under ``name`` (``name[request]`` with ``keyed=True``).
    """

    def __init__(
        self,
        log: Log,
        name: str,
        delay: float | Callable[[Any], float] = 0,
        fn: Callable[[Any], Any] = lambda x: x,
        fail: Callable[[Any], bool] = lambda x: False,
        keyed: bool = False,
    ) -> None:
        self.log = log
        self.name = name
        self.delay = delay
        self.fn = fn
        self.fail = fail
        self.keyed = keyed

    async def call(self, request: Any) -> Any:
        log = self.log
        name = f"{self.name}[{request}]" if self.keyed else self.name
        log.started.append(name)
        log.running += 1
        log.peak = max(log.peak, log.running)
        start = log.now()
        try:
            await anyio.sleep(self.delay(request) if callable(self.delay) else self.delay)
            if self.fail(request):
                log.failed.append(name)
                raise Boom(name)
        except anyio.get_cancelled_exc_class():
            log.cancelled.append(name)
            raise
        finally:
            log.running -= 1
            log.times[name] = (start, log.now())
        log.finished.append(name)
        return self.fn(request)

    def __repr__(self) -> str:
        return f"Step({self.name!r})"
