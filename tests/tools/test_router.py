"""ToolRouter: dispatch by name, clear errors for unknown names and unparseable arguments."""

from __future__ import annotations

import pytest

from towerpy import InvalidToolArguments, ToolError, ToolNotFound
from towerpy.tools import ToolInvocation, ToolOutput, ToolRouter, tool


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
