"""Tool.from_schema: a tool from a JSON Schema and a function of the arguments dict."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import ConcurrencyLimiter, Elapsed, InvalidToolArguments
from towerpy.testing import InFlightProbe
from towerpy.tools import JoinPolicy, ParallelToolRouter, Tool, ToolInvocation, ToolRouter

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "Where."},
        "units": {"enum": ["c", "f"]},
        "kebab-case": {"type": "boolean"},
    },
    "required": ["city"],
    "additionalProperties": False,
}


async def weather(arguments: dict[str, Any]) -> str:
    return f"sunny in {arguments['city']} ({arguments.get('units', 'c')})"


async def test_validates_against_the_schema_then_calls_the_function_with_the_dict() -> None:
    seen: list[dict[str, Any]] = []

    def record(arguments: dict[str, Any]) -> int:  # sync: runs in a worker thread
        seen.append(arguments)
        return len(arguments)

    tool = Tool.from_schema("weather", "Returns the weather.", WEATHER, record)
    arguments = {"city": "Oslo", "kebab-case": True}
    assert await tool(arguments) == 2
    assert seen == [arguments]
    assert seen[0] is not arguments  # a copy: the function cannot change the invocation
    with pytest.raises(InvalidToolArguments, match="weather': city: field required"):
        await tool({})
    with pytest.raises(InvalidToolArguments, match="units: must be one of 'c', 'f', got 'k'"):
        await tool({"city": "Oslo", "units": "k"})
    with pytest.raises(InvalidToolArguments, match="must be a JSON object, got list"):
        await tool([])  # type: ignore[arg-type]
    assert len(seen) == 1  # nothing invalid reached the function
    assert tool.validate({"city": "Rome"}) == {"city": "Rome"}


async def test_is_routed_like_any_tool_with_its_spec_as_given() -> None:
    tool = Tool.from_schema("weather", "Returns the weather.", WEATHER, weather)
    assert tool.spec.parameters == WEATHER
    assert tool.spec.description == "Returns the weather."
    router = ToolRouter([tool])
    output = await router(ToolInvocation(id="1", name="weather", arguments={"city": "Lima"}))
    assert output.content == "sunny in Lima (c)"
    bare = Tool.from_schema("ping", "Pings.", {}, lambda arguments: "pong")
    assert bare.spec.parameters == {"type": "object", "properties": {}}  # what providers need


async def test_limits_and_timeouts_apply() -> None:
    async def slow(arguments: dict[str, Any]) -> str:
        await anyio.sleep(arguments["seconds"])
        return "done"

    schema = {"properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}
    tool = Tool.from_schema("slow", "Sleeps.", schema, slow, concurrency_limit=2, timeout=5.0)
    probe = InFlightProbe(ToolRouter([tool]))
    parallel = ParallelToolRouter(probe, limit=10, policy=JoinPolicy.ISOLATE)
    batch = [ToolInvocation(id=str(i), name="slow", arguments={"seconds": 1}) for i in range(6)]
    batch.append(ToolInvocation(id="late", name="slow", arguments={"seconds": 9}))
    start = anyio.current_time()
    outputs = await parallel(batch)
    assert [o.content for o in outputs[:6]] == ["done"] * 6
    assert outputs[6].content == "tool 'slow' timed out after 5 seconds"
    ends = sorted(end - start for _, end in probe.calls)
    assert ends[:6] == [1, 1, 2, 2, 3, 3]  # two at a time
    with pytest.raises(Elapsed):
        await tool({"seconds": 6})


async def test_a_shared_limiter_bounds_several_tools_together() -> None:
    limiter = ConcurrencyLimiter(1)
    running: list[str] = []
    peak = 0

    async def work(arguments: dict[str, Any]) -> None:
        nonlocal peak
        running.append(arguments["who"])
        peak = max(peak, len(running))
        await anyio.sleep(1)
        running.remove(arguments["who"])

    schema = {"properties": {"who": {"type": "string"}}}
    first = Tool.from_schema("first", "One.", schema, work, concurrency_limit=limiter)
    second = Tool.from_schema("second", "Two.", schema, work, concurrency_limit=limiter)
    async with anyio.create_task_group() as group:
        group.start_soon(first, {"who": "a"})
        group.start_soon(second, {"who": "b"})
    assert peak == 1


async def test_validate_false_skips_the_schema_but_still_needs_an_object() -> None:
    schema = {"unevaluatedProperties": False}  # not supported by the validator
    with pytest.raises(
        ValueError, match=r"'unevaluatedProperties' is not supported.*validate=False"
    ):
        Tool.from_schema("t", "T.", schema, weather)
    tool = Tool.from_schema("t", "T.", schema, lambda arguments: arguments, validate=False)
    assert await tool({"anything": 1}) == {"anything": 1}
    with pytest.raises(InvalidToolArguments, match="must be a JSON object"):
        await tool("x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "bad name"}, ValueError, "tool name 'bad name' is not accepted"),
        ({"description": ""}, ValueError, "has no description"),
        ({"description": 3}, TypeError, "description must be a str"),
        ({"parameters": []}, TypeError, "parameters must be a JSON Schema object"),
        ({"parameters": {"type": "array"}}, ValueError, "must describe an object"),
        ({"parameters": {"default": object()}}, ValueError, "only JSON values"),
        ({"fn": "not callable"}, TypeError, r"from_schema\(fn\) must be a function"),
        ({"concurrency_limit": 0}, ValueError, "concurrency_limit must be >= 1"),
        ({"timeout": -1}, ValueError, "timeout must be a finite number of seconds > 0"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {
        "name": "weather",
        "description": "Weather.",
        "parameters": WEATHER,
        "fn": weather,
    }
    arguments.update(kwargs)
    options = {k: arguments.pop(k) for k in ("concurrency_limit", "timeout") if k in arguments}
    with pytest.raises(error, match=message):
        Tool.from_schema(
            arguments["name"],
            arguments["description"],
            arguments["parameters"],
            arguments["fn"],
            **options,
        )
