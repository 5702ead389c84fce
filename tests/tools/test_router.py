"""ToolRouter: dispatch by name, clear errors for unknown names and unparseable arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from towerpy import InvalidToolArguments, Service, ToolError, ToolNotFound
from towerpy.tools import (
    ErrorResult,
    Tool,
    ToolInvocation,
    ToolOutput,
    ToolRouter,
    ToolSpec,
    tool,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@tool
async def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@tool(sequential=True)
async def deploy(target: str) -> str:
    """Deploys; must run alone."""
    return f"deployed {target}"


class PageMissing(Exception):
    pass


@tool
async def fetch(url: str) -> str:
    """Fetches a page."""
    raise PageMissing(url)


pytestmark = pytest.mark.anyio


async def test_call_dispatches_by_name_and_returns_an_output_with_the_id() -> None:
    router = ToolRouter([add, deploy])
    out = await router(ToolInvocation(id="c1", name="add", arguments={"a": 2, "b": 3}))
    assert out == ToolOutput(id="c1", name="add", content=5)


async def test_an_unknown_name_raises_tool_not_found_listing_the_known_names() -> None:
    router = ToolRouter([add, deploy])
    with pytest.raises(ToolNotFound, match="no tool named 'mul'; known tools: 'add', 'deploy'"):
        await router(ToolInvocation(id="c1", name="mul", arguments={}))


async def test_arguments_that_were_not_json_are_rejected_before_the_tool_runs() -> None:
    calls = 0

    @tool
    async def count(n: int = 0) -> int:
        """Count."""
        nonlocal calls
        calls += 1
        return n

    router = ToolRouter([count])
    invocation = ToolInvocation(id="c1", name="count", arguments={}, raw_arguments='{"n": 1')
    with pytest.raises(InvalidToolArguments, match=r"""not a JSON object: '\{"n": 1'"""):
        await router(invocation)
    assert calls == 0


async def test_arguments_kept_back_from_a_cut_off_call_are_reported_as_cut_off() -> None:
    # a provider that stopped mid-call (max_tokens) keeps even a parseable object back
    router = ToolRouter([add])
    invocation = ToolInvocation(id="c1", name="add", raw_arguments='{"a": 1}')
    with pytest.raises(InvalidToolArguments, match="'add' were cut off before they were complete"):
        await router(invocation)


async def test_long_unparseable_arguments_are_shortened_in_the_message() -> None:
    router = ToolRouter([add])
    invocation = ToolInvocation(id="c1", name="add", raw_arguments="x" * 5000)
    with pytest.raises(InvalidToolArguments) as caught:
        await router(invocation)
    assert len(str(caught.value)) < 400


async def test_invalid_arguments_name_the_field() -> None:
    router = ToolRouter([add])
    with pytest.raises(InvalidToolArguments, match="b: field required"):
        await router(ToolInvocation(id="c1", name="add", arguments={"a": 1}))


async def test_a_tool_exception_propagates_unchanged() -> None:
    router = ToolRouter([fetch])
    with pytest.raises(PageMissing) as caught:
        await router(ToolInvocation(id="c1", name="fetch", arguments={"url": "u"}))
    assert type(caught.value) is PageMissing
    assert caught.value.args == ("u",)


def test_registering_a_second_tool_of_the_same_name_is_an_error() -> None:
    router = ToolRouter([add])

    @tool(name="add")
    async def other(x: int) -> int:
        """Other."""
        return x

    with pytest.raises(ValueError, match="a tool named 'add' is registered already"):
        router.register(other)
    with pytest.raises(ValueError, match="registered already"):
        ToolRouter([add, add])


def test_registering_a_plain_function_says_to_decorate_it() -> None:
    async def plain(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="decorate it with @tool"):
        ToolRouter().register(plain)  # type: ignore[arg-type]


def test_specs_names_and_sequential_tools() -> None:
    router = ToolRouter([add])
    router.register(deploy)
    assert [spec.name for spec in router.specs] == ["add", "deploy"]
    assert router.specs[0] == add.spec
    assert router.names == ["add", "deploy"]
    assert router.is_sequential("deploy")
    assert not router.is_sequential("add")
    assert not router.is_sequential("unknown")
    assert router.has_sequential
    assert "add" in router
    assert len(router) == 2
    assert list(router) == [add, deploy]
    assert router.get("deploy") is deploy
    assert router.get("nope") is None
    assert not ToolRouter([add]).has_sequential


def test_tool_errors_share_a_base_class() -> None:
    assert issubclass(ToolNotFound, ToolError)
    assert issubclass(InvalidToolArguments, ToolError)


class EchoService(Service[dict[str, Any], Any]):
    """Not a Tool: any service with a spec is routable."""

    spec = ToolSpec(name="echo", description="Echoes.", parameters={"type": "object"})
    sequential = True

    async def call(self, request: dict[str, Any]) -> Any:
        return request


class Shelf:
    """A ToolGroup: its tools change, and its version says when."""

    def __init__(self, *tools: Service[dict[str, Any], Any]) -> None:
        self.tools = list(tools)
        self.tools_version = 0

    def __iter__(self) -> Iterator[Service[dict[str, Any], Any]]:
        return iter(self.tools)

    def change(self, *tools: Service[dict[str, Any], Any]) -> None:
        self.tools = list(tools)
        self.tools_version += 1


async def test_any_service_with_a_spec_is_routable() -> None:
    echo = EchoService()
    router = ToolRouter([add, echo])
    assert router.names == ["add", "echo"]
    assert router.is_sequential("echo")
    out = await router(ToolInvocation(id="1", name="echo", arguments={"x": 1}))
    assert out == ToolOutput(id="1", name="echo", content={"x": 1})


def test_a_service_without_a_spec_is_refused_with_what_it_needs() -> None:
    class NoSpec(Service[dict[str, Any], Any]):
        async def call(self, request: dict[str, Any]) -> Any:
            return request

    with pytest.raises(TypeError, match=r"is a Service but has no \.spec"):
        ToolRouter([NoSpec()])
    with pytest.raises(TypeError, match="needs tools"):
        ToolRouter([3])  # type: ignore[list-item]

    class BadFlag(EchoService):
        sequential = "yes"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="sequential must be a bool"):
        ToolRouter([BadFlag()])


async def test_an_error_result_is_an_error_output_not_an_exception() -> None:
    @tool
    def refuse() -> ErrorResult:
        """Refuses."""
        return ErrorResult("not allowed here")

    out = await ToolRouter([refuse])(ToolInvocation(id="1", name="refuse"))
    assert out == ToolOutput(id="1", name="refuse", content="not allowed here", is_error=True)
    assert ErrorResult("a") == ErrorResult("a")
    assert repr(ErrorResult("a")) == "ErrorResult('a')"


async def test_a_group_is_read_again_when_its_version_changes() -> None:
    shelf = Shelf(add)
    router = ToolRouter(shelf)
    mixed = ToolRouter([shelf, deploy])
    assert router.names == ["add"]
    shelf.change(add, EchoService())
    assert router.names == ["add", "echo"]
    assert mixed.names == ["add", "echo", "deploy"]
    assert router.is_sequential("echo")
    out = await router(ToolInvocation(id="1", name="echo", arguments={}))
    assert out.content == {}
    shelf.change()
    assert router.specs == []
    with pytest.raises(ToolNotFound, match="known tools: none"):
        await router(ToolInvocation(id="2", name="add", arguments={"a": 1, "b": 2}))


def test_a_name_a_group_brings_later_keeps_the_first_tool_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shelf = Shelf()
    router = ToolRouter([add, shelf])
    with pytest.raises(ValueError, match="registered already"):
        ToolRouter([add, Shelf(add)])
    other = Tool.from_schema("add", "Another add.", {}, lambda arguments: 0)
    shelf.change(other)
    with caplog.at_level("WARNING", logger="towerpy.tools"):
        assert router.get("add") is add
    assert "a tool named 'add' is registered already" in caplog.text
