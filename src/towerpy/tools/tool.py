"""``@tool``: a function a model may call, with its schema, validation, limits and timeout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final, overload

from typing_extensions import override

from .._callables import callable_name, is_async_callable
from .._service import Service
from .._validate import (
    check_callable,
    check_instance,
    check_positive_int,
    check_seconds,
    check_str,
)
from ..limit.protocols import ConcurrencyBackend
from ._batch import current_batch, current_clock
from ._jsonschema import SchemaArguments
from ._schema import TOOL_NAME, ArgumentsSchema, describe, validate_tool_name
from ._threads import DEFAULT_THREAD_LIMITER, ThreadLimiter, run_in_thread
from .models import ToolSpec

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Self

__all__ = ["Tool", "tool"]


@final
class _Invoke(Service[tuple[list[Any], dict[str, Any]], Any], direct_call=True):
    """Calls the tool's function with validated arguments: awaited, or in a worker thread.

    Inside a batch, it starts the invocation's clock (`towerpy.tools._batch`) when the function
    starts: a sync function's wait for a worker thread is not timed. A thread left running by
    a cancelled call is reported to the batch.
    """

    __slots__ = ("_fn", "_is_async", "_limiter", "_name")

    def __init__(self, fn: Callable[..., Any], limiter: ThreadLimiter, name: str) -> None:
        self._fn = fn
        self._is_async = is_async_callable(fn)
        self._limiter = limiter
        self._name = name

    @override
    async def call(self, request: tuple[list[Any], dict[str, Any]]) -> Any:
        args, kwargs = request
        clock = current_clock.get()
        if self._is_async:
            if clock is not None:
                clock.run()
            return await self._fn(*args, **kwargs)
        batch = current_batch.get()
        return await run_in_thread(
            self._fn,
            args,
            kwargs,
            self._limiter,
            started=None if clock is None else clock.run,
            abandoned=None if batch is None else lambda done: batch.abandon(self._name, done),
        )

    def __repr__(self) -> str:
        return f"_Invoke({callable_name(self._fn)})"


@final
class Tool(Service[dict[str, Any], Any], direct_call=True):
    """A function a model may call: a service from an arguments object to the function's result.

    Build one with `tool` (usually as the ``@tool`` decorator), or with `Tool.from_schema`
    from a JSON Schema and a function that takes the arguments dict. The parameters of the function
    become a JSON Schema (`spec`), the first paragraph of its docstring the description, and the
    ``Args:`` section of a Google-style docstring the description of each parameter.

    ``ready()`` reserves a permit of the tool's own concurrency limit, if it has one.
    ``call(arguments)`` validates the arguments against the schema (`InvalidToolArguments`
    naming each field at fault, before the function runs), then awaits an async function or
    runs a sync one in a worker thread (bounded by a `ThreadLimiter`), within the tool's
    concurrency limit and timeout (`Elapsed` when it runs longer). Exceptions from the function
    propagate unchanged.

    Args:
        fn: The function. Every parameter needs a type annotation that JSON Schema can express.
        name: The name models call it by (default: the function's name); 1 to 64 letters,
            digits, ``_`` or ``-``.
        description: What the tool does, for the model (default: the docstring's first
            paragraph).
        concurrency_limit: At most this many calls of this tool run at once, across every
            caller (a `ConcurrencyLimitLayer` around the function); a `ConcurrencyLimiter`
            instead of an int is one limit shared with every tool it is given to.
        timeout: A call running longer than this many seconds is cancelled and raises `Elapsed`
            (a `TimeoutLayer`; waiting for a concurrency permit is not timed).
        sequential: Whether the tool must run alone: `ParallelToolRouter` makes it a barrier
            inside a batch.
        thread_limiter: Bounds the worker threads of sync functions (default: one limiter of 40
            threads shared by every tool).

    Raises:
        TypeError: A parameter has no annotation, a type JSON Schema cannot express, or is
            ``*args``/``**kwargs``.
        ValueError: An invalid name, ``concurrency_limit`` or ``timeout``, or no description
            (neither a docstring nor ``description=``).

    Attributes:
        name: The tool's name.
        description: The tool's description.
        spec: The `ToolSpec` models see.
        sequential: Whether the tool runs alone inside a batch.
        fn: The wrapped function.
    """

    __slots__ = (
        "_arguments",
        "_service",
        "concurrency_limit",
        "description",
        "fn",
        "name",
        "sequential",
        "spec",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        concurrency_limit: int | ConcurrencyBackend | None = None,
        timeout: float | None = None,
        sequential: bool = False,
        thread_limiter: ThreadLimiter | None = None,
    ) -> None:
        check_callable("tool(fn)", fn)
        tool_name = validate_tool_name(name if name is not None else getattr(fn, "__name__", ""))
        doc, parameter_docs = describe(fn)
        if description is not None:
            check_str(f"tool {tool_name!r}: description", description)
        _check_options(tool_name, concurrency_limit, timeout, thread_limiter)
        arguments = ArgumentsSchema(fn, tool_name, parameter_docs)
        if description is None and not doc:
            # a model picks tools by their description: an empty one is a silent bug
            raise ValueError(
                f"tool {tool_name!r} has no description: give {callable_name(fn)!r} a docstring "
                f"whose first paragraph says what it does (that is what the model reads), or "
                f"pass description=..."
            )
        self._finish(
            fn,
            tool_name,
            description if description is not None else doc,
            arguments,
            concurrency_limit,
            timeout,
            sequential,
            thread_limiter,
        )

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        parameters: dict[str, Any],
        fn: Callable[[dict[str, Any]], Any],
        *,
        concurrency_limit: int | ConcurrencyBackend | None = None,
        timeout: float | None = None,
        sequential: bool = False,
        thread_limiter: ThreadLimiter | None = None,
        validate: bool = True,
    ) -> Tool:
        """Makes a tool from a JSON Schema and a function that takes the arguments object.

        For tools whose parameters no Python signature describes: an MCP server's tools, a
        schema written by hand or generated elsewhere. ``fn`` is called with one argument, a
        copy of the validated arguments dict (so parameter names need not be Python
        identifiers); it may be async or sync (then it runs in a worker thread), and the
        tool is otherwise exactly what ``@tool`` makes: the same limits, timeout and
        `ToolRouter` routing.

        The arguments are validated against ``parameters`` before ``fn`` runs, by towerpy's
        own JSON Schema validator (draft 2020-12 assertions; ``format`` is an annotation, as
        the specification says): invalid ones raise `InvalidToolArguments` naming each
        location at fault.

        Example:
            >>> weather = Tool.from_schema(
            ...     "weather",
            ...     "Returns the weather in a city.",
            ...     {"type": "object", "properties": {"city": {"type": "string"}},
            ...      "required": ["city"]},
            ...     lambda arguments: f"sunny in {arguments['city']}",
            ... )

        Args:
            name: The name models call it by; 1 to 64 letters, digits, ``_`` or ``-``.
            description: What the tool does, for the model.
            parameters: The JSON Schema of the arguments object (``"type": "object"``; it and
                an empty ``"properties"`` are added to the spec when missing).
            fn: Called with the arguments dict; its return value is the tool's result.
            concurrency_limit: At most this many calls run at once: an int for this tool's own
                limit, or a `ConcurrencyLimiter` shared with other tools.
            timeout: A call running longer than this many seconds raises `Elapsed`.
            sequential: Whether the tool runs alone inside a batch.
            thread_limiter: Bounds the worker threads of a sync ``fn``.
            validate: False skips the schema check (the arguments must still be an object):
                for a function that validates its own arguments, such as a remote server.

        Returns:
            The tool.

        Raises:
            TypeError: ``fn`` is not callable, or ``parameters`` is not a dict.
            ValueError: An invalid name, an empty description, invalid limits, or a schema
                that does not describe an object or that the validator cannot honour (it says
                which keyword; ``validate=False`` accepts any schema).
        """
        check_callable("Tool.from_schema(fn)", fn)
        check_str("Tool.from_schema(name)", name)
        if not TOOL_NAME.match(name):
            raise ValueError(
                f"tool name {name!r} is not accepted by model providers: use 1 to 64 letters, "
                f"digits, '_' or '-'"
            )
        check_str(f"tool {name!r}: description", description)
        if not description.strip():
            raise ValueError(
                f"tool {name!r} has no description: say what it does (that is what the model reads)"
            )
        _check_options(name, concurrency_limit, timeout, thread_limiter)
        arguments = SchemaArguments(parameters, name, validate=bool(validate))
        made = cls.__new__(cls)
        made._finish(
            fn, name, description, arguments, concurrency_limit, timeout, sequential, thread_limiter
        )
        return made

    def _finish(
        self,
        fn: Callable[..., Any],
        name: str,
        description: str,
        arguments: ArgumentsSchema | SchemaArguments,
        concurrency_limit: int | ConcurrencyBackend | None,
        timeout: float | None,
        sequential: bool,
        thread_limiter: ThreadLimiter | None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.description = description
        self.concurrency_limit = concurrency_limit
        self.timeout = timeout
        self.sequential = bool(sequential)
        self._arguments = arguments
        self.spec = ToolSpec(name=name, description=description, parameters=arguments.schema)
        self._service = _stack(
            _Invoke(fn, thread_limiter or DEFAULT_THREAD_LIMITER, name),
            concurrency_limit,
            timeout,
        )

    @override
    async def ready(self) -> None:
        await self._service.ready()

    @override
    def drop_reservation(self) -> None:
        self._service.drop_reservation()

    @override
    async def try_ready(self) -> bool:
        return await self._service.try_ready()

    @override
    async def call(self, request: dict[str, Any]) -> Any:
        try:
            arguments = self._arguments.validate(request)
        except BaseException:
            self._service.drop_reservation()  # refused before the call: free what ready() took
            raise
        return await self._service(arguments)

    def validate(self, arguments: object) -> dict[str, Any]:
        """Validates an arguments object without running the tool.

        Returns:
            The arguments as the function receives them, by parameter name.

        Raises:
            InvalidToolArguments: The arguments do not fit the schema.
        """
        args, kwargs = self._arguments.validate(arguments)
        if isinstance(self._arguments, SchemaArguments):
            validated: dict[str, Any] = args[0]
            return validated
        names = self._arguments.parameter_names
        return {**dict(zip(names, args, strict=False)), **kwargs}

    @override
    async def __aenter__(self) -> Self:
        await self._service.__aenter__()
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._service.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def _check_options(name: str, limit: object, timeout: object, thread_limiter: object) -> None:
    where = f"tool {name!r}:"
    if limit is not None and not isinstance(limit, ConcurrencyBackend):  # a count, else shared
        check_positive_int(f"{where} concurrency_limit", limit)
    if timeout is not None:
        check_seconds(f"{where} timeout", timeout, positive=True, finite=True)
    if thread_limiter is not None:
        check_instance(f"{where} thread_limiter", thread_limiter, ThreadLimiter, "a ThreadLimiter")


def _stack(
    invoke: Service[Any, Any],
    concurrency_limit: int | ConcurrencyBackend | None,
    timeout: float | None,
) -> Service[Any, Any]:
    # the permit is outside the timeout: waiting for a permit is not running
    service = invoke
    if timeout is not None:
        from ..timeout import TimeoutLayer

        service = TimeoutLayer(timeout).layer(service)
    if concurrency_limit is not None:
        from ..limit.concurrency import ConcurrencyLimitLayer

        if isinstance(concurrency_limit, int):
            service = ConcurrencyLimitLayer(concurrency_limit).layer(service)
        else:
            service = ConcurrencyLimitLayer(limiter=concurrency_limit).layer(service)
    return service


@overload
def tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    concurrency_limit: int | ConcurrencyBackend | None = None,
    timeout: float | None = None,
    sequential: bool = False,
    thread_limiter: ThreadLimiter | None = None,
) -> Tool: ...
@overload
def tool(
    fn: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    concurrency_limit: int | ConcurrencyBackend | None = None,
    timeout: float | None = None,
    sequential: bool = False,
    thread_limiter: ThreadLimiter | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    concurrency_limit: int | ConcurrencyBackend | None = None,
    timeout: float | None = None,
    sequential: bool = False,
    thread_limiter: ThreadLimiter | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Makes a `Tool` from a function: ``@tool`` or ``@tool(name=..., timeout=...)``.

    Example:
        >>> @tool(concurrency_limit=2, timeout=10.0)
        ... async def search(query: str, limit: int = 5) -> list[str]:
        ...     '''Searches the web and returns the top result URLs.
        ...
        ...     Args:
        ...         query: What to search for.
        ...         limit: How many URLs to return.
        ...     '''

    Args:
        fn: The function (omitted when the decorator is called with options).
        name: The name models call it by (default: the function's name).
        description: What the tool does (default: the docstring's first paragraph).
        concurrency_limit: At most this many calls of the tool run at once.
        timeout: Seconds after which a call is cancelled with `Elapsed`.
        sequential: Run alone inside a batch (a barrier for `ParallelToolRouter`).
        thread_limiter: Bounds worker threads of a sync function (default: 40, shared).

    Returns:
        The tool, or a decorator that makes one.

    Raises:
        TypeError: A parameter cannot be described to a model (see `Tool`).
        ValueError: An invalid name, ``concurrency_limit`` or ``timeout``, or a function
            without a docstring and no ``description=``.
    """

    def make(function: Callable[..., Any]) -> Tool:
        return Tool(
            function,
            name=name,
            description=description,
            concurrency_limit=concurrency_limit,
            timeout=timeout,
            sequential=sequential,
            thread_limiter=thread_limiter,
        )

    return make if fn is None else make(fn)
