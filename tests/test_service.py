from __future__ import annotations

import functools
from typing import Any, Self

import anyio
import pytest
from typing_extensions import override

from towerpy import Middleware, Service, layer_fn, service_fn
from towerpy.testing import mock_service

pytestmark = pytest.mark.anyio


class Recording(Service[str, str]):
    """A service whose ready() has work of its own, to see what __call__ does."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @override
    async def ready(self) -> None:
        self.log.append("ready")

    @override
    async def call(self, request: str) -> str:
        self.log.append(f"call {request}")
        return request.upper()


async def test_dunder_call_runs_ready_then_call() -> None:
    svc = Recording()
    assert await svc("x") == "X"
    assert svc.log == ["ready", "call x"]


async def test_a_service_with_readiness_calls_directly_only_when_its_class_declares_it() -> None:
    class Plain(Service[int, int]):
        @override
        async def call(self, request: int) -> int:
            return request + 1

    class Ready(Plain):
        @override
        async def ready(self) -> None:
            pass

    class Direct(Ready, direct_call=True):
        pass

    class Wrapper(Middleware[int, int]):
        @override
        async def call(self, request: int) -> int:
            result: int = await self.inner(request)
            return result

    assert Plain.__call__ is Plain.call  # no readiness of its own: ready() would do nothing
    assert Ready.__call__ is Service.__call__
    assert Direct.__call__ is Plain.call
    assert Wrapper.__call__ is Service.__call__  # a Middleware's ready() forwards: not skipped
    assert await Plain()(1) == 2
    assert await Ready()(1) == 2
    assert await Direct()(1) == 2


async def test_a_subclass_overriding_call_of_a_direct_class_gets_ready_then_call() -> None:
    class Direct(Service[int, int], direct_call=True):
        @override
        async def ready(self) -> None:
            pass

        @override
        async def call(self, request: int) -> int:
            return request

    class Child(Direct):
        @override
        async def call(self, request: int) -> int:
            return -request

    class Same(Direct):
        pass

    assert Child.__call__ is Service.__call__  # the inherited direct __call__ would skip it
    assert await Child()(1) == -1
    assert Same.__call__ is Direct.call


async def test_a_class_defining_call_and_declaring_direct_call_is_refused() -> None:
    with pytest.raises(TypeError, match="defines __call__ and passes direct_call"):

        class Both(Service[int, int], direct_call=True):  # pyright: ignore
            async def __call__(self, request: int) -> int:
                return request

            @override
            async def call(self, request: int) -> int:
                return request


async def test_a_subclass_that_adds_readiness_gets_ready_then_call_back() -> None:
    class Plain(Service[str, str]):
        @override
        async def call(self, request: str) -> str:
            return request

    class WithReady(Plain):
        log: list[str]

        @override
        async def ready(self) -> None:
            self.log.append("ready")

    svc = WithReady()
    svc.log = []
    assert await svc("x") == "x"
    assert svc.log == ["ready"]


async def test_default_ready_returns_at_once_and_try_ready_is_true() -> None:
    svc = service_fn(_echo)
    await svc.ready()
    assert await svc.try_ready()


async def test_default_try_ready_runs_a_custom_ready_that_does_not_wait() -> None:
    svc = Recording()
    assert await svc.try_ready()
    assert svc.log == ["ready"]


async def test_default_try_ready_is_false_when_a_custom_ready_would_wait() -> None:
    class Never(Service[int, int]):
        @override
        async def ready(self) -> None:
            await anyio.sleep_forever()

        @override
        async def call(self, request: int) -> int:
            return request

    assert not await Never().try_ready()


async def test_service_is_an_async_context_manager_returning_itself() -> None:
    svc = service_fn(_echo)
    async with svc as entered:
        assert entered is svc


async def test_middleware_forwards_readiness_and_lifecycle_to_its_inner_service() -> None:
    events: list[str] = []

    class Inner(Service[int, int]):
        @override
        async def ready(self) -> None:
            events.append("ready")

        @override
        async def try_ready(self) -> bool:
            events.append("try_ready")
            return False

        @override
        async def call(self, request: int) -> int:
            return request

        @override
        async def __aenter__(self) -> Self:
            events.append("enter")
            return self

        @override
        async def __aexit__(self, *exc_info: object) -> None:
            events.append("exit")

    class Double(Middleware[int, int]):
        @override
        async def call(self, request: int) -> int:
            result: int = await self.inner(request * 2)
            return result

    svc = Double(Inner())
    async with svc as entered:
        assert entered is svc
        await svc.ready()
        assert not await svc.try_ready()
        assert await svc(2) == 4  # Double's ready(), then Inner's own in self.inner(...)
    assert events == ["enter", "ready", "try_ready", "ready", "ready", "exit"]
    assert repr(svc).startswith("Double(")


async def test_service_fn_calls_the_function() -> None:
    svc = service_fn(_echo)
    assert await svc("hello") == "hello"
    assert await svc.call("again") == "again"


async def test_service_fn_accepts_partials_and_async_callable_objects() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    class Adder:
        async def __call__(self, x: int) -> int:
            return x + 10

    assert await service_fn(functools.partial(add, 1))(2) == 3
    assert await service_fn(Adder())(1) == 11


def test_service_fn_of_a_plain_function_says_so_at_once() -> None:
    def sync_handler(request: str) -> str:
        return request

    with pytest.raises(TypeError, match=r"async function.*'.*sync_handler'"):
        service_fn(sync_handler)  # type: ignore[arg-type]


def test_service_fn_of_a_non_callable_says_what_it_got() -> None:
    with pytest.raises(TypeError, match="got int"):
        service_fn(3)  # type: ignore[arg-type]


async def test_layer_fn_wraps_with_the_function() -> None:
    inner = service_fn(_echo)
    layer = layer_fn(lambda s: _Suffix(s))
    wrapped = layer.layer(inner)
    assert await wrapped("a") == "a!"


def test_layer_fn_rejects_async_functions_and_non_callables() -> None:
    async def wrap(s: Service[Any, Any]) -> Service[Any, Any]:
        return s

    with pytest.raises(TypeError, match=r"plain \(synchronous\) function, got the async"):
        layer_fn(wrap)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got str"):
        layer_fn("nope")  # type: ignore[call-overload]


def test_service_cannot_be_instantiated_without_call() -> None:
    class Incomplete(Service[int, int]):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


async def test_mock_inner_sees_requests_through_middleware() -> None:
    inner, handle = mock_service()
    svc = _Suffix(inner)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, "q")
        request, responder = await handle.next_request()
        assert request == "q!"
        responder.send("done")


class _Suffix(Middleware[str, str]):
    @override
    async def call(self, request: str) -> str:
        result: str = await self.inner(request + "!")
        return result


async def _echo(x: Any) -> Any:
    return x
