"""The hook slots: empty until an observer is installed, filled only with what it hears."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pytest

from towerpy import ConcurrencyLimiter, ServiceBuilder, _observe, service_fn
from towerpy.llm import Agent, Message, ScriptedModel, ToolCall
from towerpy.tools import ToolInvocation, ToolRouter, tool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

pytestmark = pytest.mark.anyio

T = TypeVar("T")

SLOTS = (
    "wait",
    "retry",
    "give_up",
    "timeout",
    "shed",
    "circuit_open",
    "agent_run",
    "model_step",
    "tool_call",
    "agent_span",
    "model_span",
)


class Recorder(_observe.Observer):
    def __init__(self, name: str, log: list[Any]) -> None:
        self.name = name
        self.log = log

    def wait_began(self, layer: str, reason: str) -> None:
        self.log.append((self.name, "began", layer, reason))

    def wait_ended(self, layer: str, reason: str, seconds: float) -> None:
        self.log.append((self.name, "ended", layer, reason, seconds))

    async def tool_call(
        self, router: Any, invocation: Any, proceed: Callable[[], Awaitable[T]]
    ) -> T:
        self.log.append((self.name, "enter", invocation.name))
        try:
            return await proceed()
        finally:
            self.log.append((self.name, "exit", invocation.name))


class SheddingOnly(_observe.Observer):
    def shed(self, layer: str) -> None:
        pass


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    assert _observe.installed() == ()
    yield
    for observer in _observe.installed():
        _observe.uninstall(observer)


def test_every_slot_is_empty_when_nobody_listens() -> None:
    assert [name for name in SLOTS if getattr(_observe, name) is not None] == []


def test_an_observer_fills_only_the_slots_it_overrides_and_empties_them_again() -> None:
    observer = SheddingOnly()
    _observe.install(observer)
    _observe.install(observer)  # once
    assert _observe.installed() == (observer,)
    assert [name for name in SLOTS if getattr(_observe, name) is not None] == ["shed"]
    _observe.uninstall(observer)
    assert [name for name in SLOTS if getattr(_observe, name) is not None] == []
    _observe.uninstall(observer)  # nothing happens


async def test_a_wait_is_reported_only_when_the_task_actually_waited() -> None:
    log: list[Any] = []
    _observe.install(Recorder("a", log))
    permits = ConcurrencyLimiter(1)
    await permits.acquire()  # free: no wait
    assert log == []
    async with anyio.create_task_group() as group:
        group.start_soon(permits.acquire)
        await anyio.sleep(2)
        permits.release(True)
    assert log == [
        ("a", "began", "concurrency_limit", "permit"),
        ("a", "ended", "concurrency_limit", "permit", 2.0),
    ]


async def test_a_wrapped_wait_returns_and_raises_what_the_wait_does() -> None:
    log: list[Any] = []
    _observe.install(Recorder("a", log))
    assert _observe.wait is not None

    async def value() -> int:
        await anyio.sleep(1)
        return 42

    async def failure() -> int:
        await anyio.sleep(1)
        raise LookupError("gone")

    assert await _observe.wait("x", value()) == 42
    with pytest.raises(LookupError, match="gone"):
        await _observe.wait("x", failure(), "why")
    assert log == [
        ("a", "began", "x", "capacity"),
        ("a", "ended", "x", "capacity", 1.0),
        ("a", "began", "x", "why"),
        ("a", "ended", "x", "why", 1.0),
    ]


async def test_every_observer_hears_and_span_points_nest_in_install_order() -> None:
    log: list[Any] = []
    _observe.install(Recorder("outer", log))
    _observe.install(Recorder("inner", log))

    @tool(concurrency_limit=1)
    async def nap() -> str:
        """Naps."""
        await anyio.sleep(1)
        return "rested"

    calls = [ToolCall(id=str(n), name="nap", arguments={}) for n in (1, 2)]
    agent = Agent(
        ScriptedModel([Message.assistant(tool_calls=calls), Message.assistant("ok")]),
        tools=ToolRouter([nap]),
    )
    await agent.run("go")
    assert log == [
        ("outer", "enter", "nap"),
        ("inner", "enter", "nap"),
        ("outer", "enter", "nap"),
        ("inner", "enter", "nap"),
        ("outer", "began", "concurrency_limit", "permit"),
        ("inner", "began", "concurrency_limit", "permit"),
        ("inner", "exit", "nap"),
        ("outer", "exit", "nap"),
        ("outer", "ended", "concurrency_limit", "permit", 1.0),
        ("inner", "ended", "concurrency_limit", "permit", 1.0),
        ("inner", "exit", "nap"),
        ("outer", "exit", "nap"),
    ]


async def test_a_router_called_from_inside_a_tool_is_its_own_span_point() -> None:
    log: list[Any] = []
    _observe.install(Recorder("r", log))

    @tool
    async def leaf() -> str:
        """A leaf."""
        return "leaf"

    router = ToolRouter([leaf])

    @tool
    async def branch() -> str:
        """Calls another tool through the router."""
        output = await router.call(ToolInvocation(id="in", name="leaf", arguments={}))
        return str(output.content)

    router.register(branch)
    output = await router.call(ToolInvocation(id="out", name="branch", arguments={}))
    assert output.content == "leaf"
    assert log == [
        ("r", "enter", "branch"),
        ("r", "enter", "leaf"),
        ("r", "exit", "leaf"),
        ("r", "exit", "branch"),
    ]


async def test_not_listening_costs_the_hot_path_no_call() -> None:
    # the hook sites only read a module attribute: nothing is called while it is None
    calls = 0

    class Counting(_observe.Observer):
        def wait_ended(self, layer: str, reason: str, seconds: float) -> None:
            nonlocal calls
            calls += 1

    service = ServiceBuilder().concurrency_limit(1).rate_limit(1e9).service(service_fn(anyio.sleep))
    observer = Counting()
    _observe.install(observer)
    _observe.uninstall(observer)
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(service, 1)
    assert calls == 0
    assert anyio.current_time() == 3.0
