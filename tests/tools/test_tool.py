"""@tool: schemas from signatures, validation before the call, async and sync functions."""

from __future__ import annotations

import dataclasses
import enum
import math
import threading
from collections.abc import Callable  # noqa: TC003 - @tool resolves annotations at runtime
from typing import Annotated, Any, Literal, Optional

import anyio
import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from towerpy import Elapsed, InvalidToolArguments, Service, ServiceBuilder
from towerpy.testing import wait_all_tasks_blocked
from towerpy.tools import ThreadLimiter, Tool, tool
from towerpy.tools._threads import run_in_thread


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str | None = None


class Trip(BaseModel):
    start: Place
    stops: list[Place] = []


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Options(TypedDict):
    verbose: bool


class Node(BaseModel):
    label: str
    children: list[Node] = []


def schema_of(fn: Callable[..., Any]) -> dict[str, Any]:
    return tool(fn, description="a test tool").spec.parameters


# --- schemas -----------------------------------------------------------------------------------


def test_plain_types_become_json_schema_types() -> None:
    async def f(
        s: str, i: int, x: float, b: bool, tags: list[str], counts: dict[str, int], n: None
    ) -> None: ...

    schema = schema_of(f)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"] == {
        "s": {"type": "string"},
        "i": {"type": "integer"},
        "x": {"type": "number"},
        "b": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "n": {"type": "null"},
    }
    assert schema["required"] == ["s", "i", "x", "b", "tags", "counts", "n"]


def test_defaults_are_in_the_schema_and_not_required() -> None:
    async def f(query: str, limit: int = 5, exact: bool = False) -> None: ...

    schema = schema_of(f)
    assert schema["properties"]["limit"] == {"type": "integer", "default": 5}
    assert schema["properties"]["exact"] == {"type": "boolean", "default": False}
    assert schema["required"] == ["query"]


def test_optional_parameters_accept_null() -> None:
    async def f(a: Optional[str] = None, b: int | None = None) -> None:  # noqa: UP045
        ...

    schema = schema_of(f)
    assert schema["properties"]["a"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
    }
    assert schema["properties"]["b"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert "required" not in schema


def test_enums_and_literals_list_their_values() -> None:
    async def f(unit: Unit, mode: Literal["fast", "slow"] = "fast") -> None: ...

    schema = schema_of(f)
    assert schema["properties"]["unit"] == {"enum": ["celsius", "fahrenheit"], "type": "string"}
    assert schema["properties"]["mode"] == {
        "enum": ["fast", "slow"],
        "type": "string",
        "default": "fast",
    }
    assert "$defs" not in schema


def test_nested_models_are_inlined_without_titles() -> None:
    async def f(trip: Trip) -> None: ...

    schema = schema_of(f)
    place = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["city"],
    }
    assert schema["properties"]["trip"] == {
        "type": "object",
        "properties": {
            "start": place,
            "stops": {"type": "array", "items": place, "default": []},
        },
        "required": ["start"],
    }
    assert "$defs" not in schema
    assert "title" not in str(schema)


def test_dataclasses_and_typed_dicts_become_objects() -> None:
    async def f(point: Point, options: Options) -> None: ...

    schema = schema_of(f)
    assert schema["properties"]["point"] == {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
        "required": ["x", "y"],
        "additionalProperties": False,  # validated as strictly as the top level
    }
    assert schema["properties"]["options"]["properties"] == {"verbose": {"type": "boolean"}}


def test_recursive_models_keep_their_definition() -> None:
    async def f(tree: Node) -> None: ...

    schema = schema_of(f)
    node = schema["$defs"]["Node"]
    assert node["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert schema["properties"]["tree"]["properties"]["label"] == {"type": "string"}


def test_a_parameter_called_title_keeps_its_name() -> None:
    async def f(title: str) -> None: ...

    assert schema_of(f)["properties"] == {"title": {"type": "string"}}


def test_parameters_may_shadow_pydantic_attributes() -> None:
    @tool
    async def f(json: str, schema: int, model_config: bool = True) -> tuple[str, int, bool]:
        """F."""
        return json, schema, model_config

    assert list(f.spec.parameters["properties"]) == ["json", "schema", "model_config"]
    assert f.validate({"json": "x", "schema": 2}) == {
        "json": "x",
        "schema": 2,
        "model_config": True,
    }


def test_annotated_field_constraints_reach_the_schema() -> None:
    async def f(n: Annotated[int, Field(ge=1, le=10, description="how many")]) -> None: ...

    assert schema_of(f)["properties"]["n"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "description": "how many",
    }


def test_a_tool_without_parameters_has_an_empty_object_schema() -> None:
    async def now() -> str:
        return "noon"

    assert schema_of(now) == {"type": "object", "properties": {}, "additionalProperties": False}


def test_a_type_json_schema_cannot_express_is_a_clear_error() -> None:
    async def f(query: str, callback: Callable[[int], int]) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'callback' has the type .*cannot be expressed"):
        tool(f)


def test_an_arbitrary_class_is_a_clear_error() -> None:
    async def f(lock: threading.Event) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'lock' has the type threading.Event"):
        tool(f)


def test_a_parameter_without_annotation_is_a_clear_error() -> None:
    async def f(query):  # type: ignore[no-untyped-def]
        ...

    with pytest.raises(TypeError, match="parameter 'query' has no type annotation"):
        tool(f)


def test_star_args_are_rejected() -> None:
    async def f(*queries: str) -> None: ...

    with pytest.raises(TypeError, match=r"\*args and \*\*kwargs"):
        tool(f)


def test_annotations_that_do_not_resolve_are_a_clear_error() -> None:
    async def f(x: "Missing") -> None: ...  # type: ignore[name-defined]  # noqa: F821, UP037

    with pytest.raises(TypeError, match="cannot resolve the type annotations"):
        tool(f)


# --- names and descriptions --------------------------------------------------------------------


def test_description_is_the_first_docstring_paragraph_and_args_describe_parameters() -> None:
    @tool
    async def search(query: str, limit: int = 5) -> list[str]:
        """Searches the web
        and returns URLs.

        Results come from a cache when possible.

        Args:
            query: What to
                search for.
            limit (int): How many URLs.

        Returns:
            The URLs.
        """
        return []

    assert search.name == "search"
    assert search.description == "Searches the web and returns URLs."
    props = search.spec.parameters["properties"]
    assert props["query"]["description"] == "What to search for."
    assert props["limit"]["description"] == "How many URLs."


def test_docstring_markup_is_left_out_of_what_the_model_reads() -> None:
    @tool
    async def parse(text: str, strict: bool = False) -> dict[str, object]:
        """Parses ``text`` with :func:`json.loads` into a :class:`~towerpy.tools.ToolOutput`.

        Args:
            text: The **JSON** text, see `RFC 8259 <https://www.rfc-editor.org/rfc/rfc8259>`_.
            strict: Refuse *anything* but an object, as [the spec](https://json.org) says.
        """
        return {}

    assert parse.description == "Parses text with json.loads into a ToolOutput."
    props = parse.spec.parameters["properties"]
    assert props["text"]["description"] == (
        "The JSON text, see RFC 8259 (https://www.rfc-editor.org/rfc/rfc8259)."
    )
    assert props["strict"]["description"] == (
        "Refuse anything but an object, as the spec (https://json.org) says."
    )


def test_plain_text_keeps_what_only_looks_like_markup() -> None:
    from towerpy.tools._schema import plain_text

    text = "Takes *args like a*b*c, snake_case and __init__, costs 2*3 = 6 and 5 * 4."
    assert plain_text(text) == text
    assert plain_text("Example::") == "Example:"


def test_a_tool_without_a_docstring_is_refused_when_it_is_made() -> None:
    async def nameless(x: int) -> int:
        return x

    with pytest.raises(ValueError, match=r"tool 'nameless' has no description: give .*nameless"):
        tool(nameless)
    with pytest.raises(ValueError, match="pass description="):
        tool(name="other")(nameless)
    assert tool(nameless, description="Returns x.").description == "Returns x."


def test_a_partial_is_described_by_its_function_not_by_functools() -> None:
    import functools

    async def scaled(x: int, factor: int) -> int:
        """Scales x."""
        return x * factor

    assert tool(functools.partial(scaled, factor=2), name="double").description == "Scales x."


def test_name_and_description_can_be_given() -> None:
    @tool(name="web-search", description="Finds pages.")
    async def search(query: str) -> None:
        """Ignored."""

    assert (search.spec.name, search.spec.description) == ("web-search", "Finds pages.")


@pytest.mark.parametrize("bad", ["has space", "", "x" * 65, "dots.not.allowed", "ünï"])
def test_names_providers_reject_are_refused_when_the_tool_is_made(bad: str) -> None:
    async def f() -> None: ...

    with pytest.raises(ValueError, match="not accepted by model providers"):
        tool(f, name=bad)


def test_sixty_four_characters_are_accepted() -> None:
    async def f() -> None:
        """Does nothing."""

    assert tool(f, name="a" * 64).name == "a" * 64


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("concurrency_limit", 0, ValueError),
        ("concurrency_limit", True, TypeError),
        ("concurrency_limit", "2", TypeError),
        ("timeout", 0, ValueError),
        ("timeout", -1.0, ValueError),
        ("timeout", math.inf, ValueError),
        ("timeout", "5", TypeError),
        ("description", 3, TypeError),
        ("thread_limiter", 4, TypeError),
        ("name", 3, TypeError),
    ],
)
def test_bad_options_are_refused_when_the_tool_is_made(
    option: str, value: object, error: type[Exception]
) -> None:
    async def f() -> None:
        """Does nothing."""

    with pytest.raises(error, match=option):
        tool(f, **{option: value})  # type: ignore[call-overload]


def test_something_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"tool\(fn\) must be a function, got int 42"):
        tool(42)  # type: ignore[call-overload]


# --- calling -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_arguments_are_validated_and_converted_before_the_function_runs() -> None:
    received: list[Any] = []

    @tool
    async def plan(trip: Trip, unit: Unit = Unit.CELSIUS) -> str:
        """Plan."""
        received.append((trip, unit))
        return trip.start.city

    assert await plan({"trip": {"start": {"city": "Oslo"}}, "unit": "fahrenheit"}) == "Oslo"
    assert received == [(Trip(start=Place(city="Oslo")), Unit.FAHRENHEIT)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "fault"),
    [
        ({}, "query: field required"),
        ({"query": "x", "limit": "many"}, "limit: input should be a valid integer"),
        ({"query": "x", "place": {"country": "NO"}}, "place.city: field required"),
        ({"query": "x", "colour": "red"}, "colour: extra inputs are not permitted"),
    ],
)
async def test_invalid_arguments_name_the_field_and_the_function_never_runs(
    arguments: dict[str, Any], fault: str
) -> None:
    calls = 0

    @tool
    async def search(query: str, limit: int = 5, place: Place | None = None) -> None:
        """Search."""
        nonlocal calls
        calls += 1

    with pytest.raises(InvalidToolArguments) as caught:
        await search(arguments)
    assert fault in str(caught.value)
    assert "tool 'search'" in str(caught.value)
    assert calls == 0


@pytest.mark.anyio
async def test_arguments_that_are_not_an_object_are_invalid() -> None:
    @tool
    async def f(x: int) -> int:
        """F."""
        return x

    with pytest.raises(InvalidToolArguments, match="must be a JSON object, got list"):
        await f([1])  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_positional_only_parameters_are_passed_by_position() -> None:
    @tool
    async def f(a: int, /, b: int) -> tuple[int, int]:
        """F."""
        return a, b

    assert await f({"a": 1, "b": 2}) == (1, 2)


@pytest.mark.anyio
async def test_sync_functions_run_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    @tool
    def where(label: str) -> tuple[str, int]:
        """Where."""
        return label, threading.get_ident()

    label, thread = await where({"label": "x"})
    assert label == "x"
    assert thread != loop_thread


@pytest.mark.anyio
async def test_exceptions_of_the_function_propagate_unchanged() -> None:
    error = LookupError("no such page")

    @tool
    async def fetch(url: str) -> str:
        """Fetch."""
        raise error

    @tool
    def fetch_sync(url: str) -> str:
        """Fetch sync."""
        raise error

    for fetcher in (fetch, fetch_sync):
        with pytest.raises(LookupError) as caught:
            await fetcher({"url": "u"})
        assert caught.value is error


@pytest.mark.anyio
async def test_a_tool_is_a_service_that_layers_can_wrap() -> None:
    @tool
    async def double(x: int) -> int:
        """Double."""
        return 2 * x

    assert isinstance(double, Service)
    wrapped = ServiceBuilder().map_response(str).service(double)
    assert await wrapped({"x": 21}) == "42"
    assert repr(double) == "Tool('double')"


@pytest.mark.anyio
async def test_a_bound_method_becomes_a_tool_without_self() -> None:
    class Counter:
        def __init__(self) -> None:
            self.total = 0

        async def add(self, n: int) -> int:
            """Adds n."""
            self.total += n
            return self.total

    counter = Counter()
    add = tool(counter.add)
    assert list(add.spec.parameters["properties"]) == ["n"]
    assert await add({"n": 3}) == 3


# --- worker threads ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_cancelled_sync_tool_returns_at_once_and_its_thread_keeps_its_slot() -> None:
    limiter = ThreadLimiter(1)
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def block() -> None:
        started.set()
        release.wait(10)
        finished.set()

    scope = anyio.CancelScope()

    async def caller() -> None:
        with scope:
            await run_in_thread(block, [], {}, limiter)

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        assert await anyio.to_thread.run_sync(started.wait, 10)
        scope.cancel()
    assert not finished.is_set()  # the caller left while its function was still running
    assert limiter.busy == 1  # the thread cannot be stopped: it still counts
    release.set()
    await limiter.acquire()  # the slot comes back once the function has returned
    assert finished.is_set()
    limiter.release()
    assert limiter.busy == 0


@pytest.mark.anyio
async def test_sync_tools_beyond_the_thread_limit_wait_for_a_free_thread() -> None:
    limiter = ThreadLimiter(2)
    gates = [threading.Event() for _ in range(3)]
    started = [threading.Event() for _ in range(3)]

    @tool(thread_limiter=limiter)
    def work(i: int) -> int:
        """Work."""
        started[i].set()
        gates[i].wait(10)
        return i

    results: list[int] = []

    async def run(i: int) -> None:
        results.append(await work({"i": i}))

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(run, i)
            await wait_all_tasks_blocked()
        assert await anyio.to_thread.run_sync(started[0].wait, 10)
        assert await anyio.to_thread.run_sync(started[1].wait, 10)
        assert not started[2].is_set()
        assert limiter.busy == 2
        gates[0].set()
        assert await anyio.to_thread.run_sync(started[2].wait, 10)
        gates[1].set()
        gates[2].set()
    assert sorted(results) == [0, 1, 2]
    assert limiter.busy == 0


@pytest.mark.anyio
async def test_a_caller_cancelled_while_waiting_for_a_thread_takes_no_slot() -> None:
    limiter = ThreadLimiter(1)
    gate = threading.Event()
    ran: list[str] = []

    def hold() -> None:
        gate.wait(10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_in_thread, hold, [], {}, limiter)
        await wait_all_tasks_blocked()
        with anyio.move_on_after(1.0) as scope:
            await run_in_thread(ran.append, ["never"], {}, limiter)
        assert scope.cancelled_caught
        gate.set()
    assert ran == []
    assert limiter.busy == 0


def test_thread_limiter_needs_a_positive_total() -> None:
    with pytest.raises(ValueError, match="total must be >= 1, got 0"):
        ThreadLimiter(0)
    with pytest.raises(TypeError, match="total must be an int >= 1"):
        ThreadLimiter("4")  # type: ignore[arg-type]
    assert repr(ThreadLimiter(3)) == "ThreadLimiter(total=3, busy=0, abandoned=0)"


def test_tool_class_and_decorator_agree() -> None:
    async def f(x: int) -> int:
        """Returns x."""
        return x

    assert Tool(f, name="g").spec == tool(name="g")(f).spec


# --- limits and timeouts -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrency_limit_bounds_calls_of_the_tool_across_callers() -> None:
    running = 0
    peak = 0

    @tool(concurrency_limit=2)
    async def slow(n: int) -> int:
        """Slow."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(1)
        running -= 1
        return n

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(slow, {"n": n})
    assert peak == 2
    assert anyio.current_time() == 3


@pytest.mark.anyio
async def test_ready_reserves_a_permit_of_the_tools_limit() -> None:
    @tool(concurrency_limit=1)
    async def one(n: int) -> int:
        """One."""
        return n

    await one.ready()
    assert not await _other_task_try_ready(one)  # this task holds the only permit
    assert await one.call({"n": 1}) == 1
    assert await _other_task_try_ready(one)


async def _other_task_try_ready(service: Service[Any, Any]) -> bool:
    result: list[bool] = []

    async def probe() -> None:
        result.append(await service.try_ready())

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
    return result[0]


@pytest.mark.anyio
async def test_a_tool_that_runs_past_its_timeout_raises_elapsed() -> None:
    @tool(timeout=1.5)
    async def stuck(n: int) -> int:
        """Stuck."""
        await anyio.sleep(10)
        return n

    with pytest.raises(Elapsed) as caught:
        await stuck({"n": 1})
    assert isinstance(caught.value, TimeoutError)
    assert anyio.current_time() == 1.5


@pytest.mark.anyio
async def test_a_sync_tool_past_its_timeout_returns_promptly() -> None:
    gate = threading.Event()

    @tool(timeout=0.5)
    def blocking(n: int) -> int:
        """Blocking."""
        gate.wait(10)
        return n

    try:
        with pytest.raises(Elapsed):
            await blocking({"n": 1})
        assert anyio.current_time() == 0.5
    finally:
        gate.set()


@pytest.mark.anyio
async def test_the_timeout_does_not_count_waiting_for_a_permit() -> None:
    @tool(concurrency_limit=1, timeout=1.5)
    async def work(n: int) -> int:
        """Work."""
        await anyio.sleep(1)
        return n

    results: list[int] = []

    async def run(n: int) -> None:
        results.append(await work({"n": n}))

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(run, n)
    assert sorted(results) == [0, 1, 2]  # the third waited 2 s for its permit, then ran 1 s
    assert anyio.current_time() == 3
