from __future__ import annotations

from typing import Any

import pytest
from typing_extensions import override

from towerpy import (
    Identity,
    Middleware,
    Service,
    ServiceBuilder,
    layer_fn,
    option_layer,
    service_fn,
)

pytestmark = pytest.mark.anyio


class Tag(Middleware[list[str], list[str]]):
    def __init__(self, inner: Service[Any, Any], name: str, log: list[str]) -> None:
        super().__init__(inner)
        self.name = name
        self.log = log

    @override
    async def call(self, request: list[str]) -> list[str]:
        self.log.append(f"{self.name} request")
        response: list[str] = await self.inner([*request, self.name])
        self.log.append(f"{self.name} response")
        return [*response, self.name]


class TagLayer:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def layer(self, inner: Service[Any, Any]) -> Service[Any, Any]:
        return Tag(inner, self.name, self.log)


async def passthrough(request: list[str]) -> list[str]:
    return [*request, "service"]


async def test_first_layer_added_is_outermost() -> None:
    log: list[str] = []
    svc = (
        ServiceBuilder()
        .layer(TagLayer("a", log))
        .layer(TagLayer("b", log))
        .layer(TagLayer("c", log))
        .service(service_fn(passthrough))
    )
    response = await svc([])
    assert response == ["a", "b", "c", "service", "c", "b", "a"]
    assert log == ["a request", "b request", "c request", "c response", "b response", "a response"]


async def test_builder_is_immutable() -> None:
    log: list[str] = []
    base = ServiceBuilder().layer(TagLayer("a", log))
    with_b = base.layer(TagLayer("b", log))
    with_c = base.layer(TagLayer("c", log))
    assert len(base.layers) == 1
    assert await with_b.service(service_fn(passthrough))([]) == ["a", "b", "service", "b", "a"]
    assert await with_c.service(service_fn(passthrough))([]) == ["a", "c", "service", "c", "a"]
    assert await base.service(service_fn(passthrough))([]) == ["a", "service", "a"]


async def test_an_empty_builder_returns_the_service_itself() -> None:
    svc = service_fn(passthrough)
    assert ServiceBuilder().service(svc) is svc


async def test_option_layer_none_adds_nothing() -> None:
    log: list[str] = []
    builder = ServiceBuilder().option_layer(None).option_layer(TagLayer("x", log))
    assert len(builder.layers) == 1
    assert await builder.service(service_fn(passthrough))([]) == ["x", "service", "x"]


async def test_option_layer_function_and_identity() -> None:
    svc = service_fn(passthrough)
    assert isinstance(option_layer(None), Identity)
    assert option_layer(None).layer(svc) is svc
    layer = TagLayer("y", [])
    assert option_layer(layer) is layer


async def test_layer_fn_in_a_builder() -> None:
    svc = (
        ServiceBuilder().layer(layer_fn(lambda s: Tag(s, "f", []))).service(service_fn(passthrough))
    )
    assert await svc([]) == ["f", "service", "f"]


async def test_shorthands_stack_in_order() -> None:
    svc = (
        ServiceBuilder()
        .map_request(lambda r: [*r, "mapped"])
        .map_response(lambda r: [*r, "outer response"])
        .map_response(lambda r: [*r, "inner response"])
        .service(service_fn(passthrough))
    )
    assert await svc([]) == ["mapped", "service", "inner response", "outer response"]


def test_layer_rejects_a_non_layer_naming_the_type() -> None:
    with pytest.raises(TypeError, match=r"needs a Layer.*got int 3"):
        ServiceBuilder().layer(3)  # type: ignore[call-overload]


def test_layer_rejects_a_layer_class_that_was_not_instantiated() -> None:
    with pytest.raises(TypeError, match=r"the class TagLayer; create one first: TagLayer\(...\)"):
        ServiceBuilder().layer(TagLayer)  # type: ignore[call-overload]


def test_layer_rejects_a_service_and_says_where_it_goes() -> None:
    with pytest.raises(TypeError, match=r"a service goes last: builder.service"):
        ServiceBuilder().layer(service_fn(passthrough))  # type: ignore[call-overload]


def test_layer_rejects_a_plain_function_and_suggests_layer_fn() -> None:
    with pytest.raises(TypeError, match="wrap it with layer_fn"):
        ServiceBuilder().layer(lambda s: s)  # type: ignore[call-overload]


def test_service_rejects_a_function_and_suggests_service_fn() -> None:
    with pytest.raises(TypeError, match="wrap it with service_fn"):
        ServiceBuilder().service(passthrough)  # type: ignore[call-overload]


def test_service_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="needs a Service, got str"):
        ServiceBuilder().service("svc")  # type: ignore[call-overload]


def test_a_layer_that_returns_a_non_service_is_named() -> None:
    class Broken:
        def layer(self, inner: Service[Any, Any]) -> Any:
            return "oops"

        def __repr__(self) -> str:
            return "Broken()"

    with pytest.raises(TypeError, match=r"layer Broken\(\) returned str, not a Service"):
        ServiceBuilder().layer(Broken()).service(service_fn(passthrough))


def test_map_shorthands_reject_async_functions_at_once() -> None:
    async def amap(x: Any) -> Any:
        return x

    methods: list[Any] = [
        ServiceBuilder().map_request,
        ServiceBuilder().map_response,
        ServiceBuilder().map_err,
    ]
    for method in methods:
        with pytest.raises(TypeError, match=r"plain \(synchronous\) function"):
            method(amap)


def test_repr_lists_layers() -> None:
    assert repr(ServiceBuilder()) == "ServiceBuilder()"
    assert "Identity()" in repr(ServiceBuilder().layer(Identity()))
