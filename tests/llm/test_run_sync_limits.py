"""Agent.run_sync, run again and again over one rate-limited step: each run is a new event loop."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio
import pytest
import trio
from trio.testing import MockClock
from typing_extensions import override

from towerpy import Middleware, RateLimit, Service
from towerpy.llm import Agent, ChatRequest, Message, ScriptedModel, StepOutcome
from towerpy.testing import VirtualTimeEventLoop

if TYPE_CHECKING:
    from collections.abc import Iterator


class Clocked(Middleware[ChatRequest, StepOutcome]):
    """Records the time on the running loop's clock at which each model call got through."""

    def __init__(self, inner: Service[ChatRequest, StepOutcome]) -> None:
        super().__init__(inner)
        self.times: list[float] = []

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        self.times.append(anyio.current_time())
        outcome: StepOutcome = await self.inner(request)
        return outcome


def virtual_clocks(monkeypatch: pytest.MonkeyPatch, backend: str, starts: Iterator[float]) -> None:
    """Makes each new event loop's clock virtual, starting at the next of ``starts``."""
    if backend == "asyncio":

        def new_event_loop() -> asyncio.AbstractEventLoop:
            loop = VirtualTimeEventLoop()
            loop.jump(next(starts))
            return loop

        # what asyncio.Runner (and so anyio.run, and so run_sync) makes its loop with
        monkeypatch.setattr(asyncio.events, "new_event_loop", new_event_loop)
    else:

        def system_clock() -> MockClock:
            clock = MockClock(autojump_threshold=0)
            clock.jump(next(starts))
            return clock

        # what trio.run makes its clock with when given none
        monkeypatch.setattr(trio._core._run, "SystemClock", system_clock)


@pytest.mark.timeout(20)  # on the old clock's time, the second run would wait ~1000 s
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_sync_again_over_a_rate_limited_model_waits_for_the_rate_only(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    virtual_clocks(monkeypatch, backend, iter([1000.0, 0.0]))  # the second clock starts earlier
    model = Clocked(ScriptedModel([Message.assistant("one"), Message.assistant("two")]))
    agent = Agent(RateLimit(model, 1, per=10))  # one call per 10 s
    assert agent.run_sync("first", backend=backend).output == "one"
    assert agent.run_sync("second", backend=backend).output == "two"
    # the first run took the token at 1000 s on its clock; the second waits 10 s on its own
    assert model.times == [1000, 10]
