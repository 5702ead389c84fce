from __future__ import annotations

from typing import Any

import anyio
import pytest
from typing_extensions import override

from towerpy import (
    ConcurrencyLimit,
    ConcurrencyLimiter,
    Identity,
    KeyedConcurrencyLimit,
    KeyedConcurrencyLimitLayer,
    Middleware,
    RateLimit,
    Service,
    ServiceBuilder,
    TokenBucket,
    layer_fn,
    option_layer,
    service_fn,
)
from towerpy.testing import InFlightProbe, mock_service, wait_all_tasks_blocked

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


async def sleep_for(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


async def test_concurrency_limit_with_a_shared_limiter_bounds_every_stack_built_with_it() -> None:
    limiter = ConcurrencyLimiter(2)
    probe = InFlightProbe(service_fn(sleep_for))
    builder = ServiceBuilder().concurrency_limit(limiter=limiter)
    first, second = builder.service(probe), ServiceBuilder().concurrency_limit(limiter=limiter)
    services = [first, second.service(probe)]
    async with anyio.create_task_group() as tg:
        for svc in services:
            for _ in range(3):
                tg.start_soon(svc, 1.0)
    assert probe.peak == 2  # six calls, two stacks, one count of 2
    assert sorted(end for _, end in probe.calls) == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    assert all(isinstance(svc, ConcurrencyLimit) and svc.limiter is limiter for svc in services)


async def test_concurrency_limit_with_a_count_gives_each_stack_its_own() -> None:
    probe = InFlightProbe(service_fn(sleep_for))
    builder = ServiceBuilder().concurrency_limit(2)  # positional, as the contract has it
    services = [builder.service(probe), builder.service(probe)]
    async with anyio.create_task_group() as tg:
        for svc in services:
            for _ in range(2):
                tg.start_soon(svc, 1.0)
    assert probe.peak == 4


async def test_rate_limit_with_a_shared_bucket_is_one_budget_across_stacks() -> None:
    bucket = TokenBucket(4, burst=2)  # a token every 0.25 s
    admitted: list[float] = []

    async def record(request: int) -> int:
        admitted.append(anyio.current_time())
        return request

    inner = service_fn(record)
    services = [ServiceBuilder().rate_limit(limiter=bucket).service(inner) for _ in range(2)]
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(services[i % 2], i)
            await wait_all_tasks_blocked()
    assert [at - start for at in admitted] == [0, 0, 0.25, 0.5, 0.75, 1.0]
    assert all(isinstance(svc, RateLimit) and svc.limiter is bucket for svc in services)


async def test_rate_limit_keeps_its_positional_rate_and_per() -> None:
    svc = ServiceBuilder().rate_limit(2, 60).service(service_fn(sleep_for))  # 2 a minute
    start = anyio.current_time()
    for _ in range(3):
        await svc(0)
    assert anyio.current_time() - start == 30
    assert isinstance(svc, RateLimit)
    assert svc.limiter.burst == 2


def test_concurrency_limit_needs_exactly_one_of_a_count_and_a_limiter() -> None:
    with pytest.raises(
        ValueError,
        match=(
            r"^ServiceBuilder.concurrency_limit\(\) needs max_in_flight \(a count for this service "
            r"alone\) or limiter= \(a ConcurrencyLimiter shared between services\)$"
        ),
    ):
        ServiceBuilder().concurrency_limit()
    with pytest.raises(
        ValueError,
        match=r"^ServiceBuilder.concurrency_limit\(\) takes max_in_flight or limiter=, not both",
    ):
        ServiceBuilder().concurrency_limit(2, limiter=ConcurrencyLimiter(2))
    with pytest.raises(TypeError, match=r"^limiter must be a ConcurrencyLimiter .*, got int$"):
        ServiceBuilder().concurrency_limit(limiter=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_in_flight must be >= 1, got 0$"):
        ServiceBuilder().concurrency_limit(0)


def test_rate_limit_needs_exactly_one_of_a_rate_and_a_bucket() -> None:
    bucket = TokenBucket(5)
    with pytest.raises(
        ValueError,
        match=(
            r"^ServiceBuilder.rate_limit\(\) needs rate \(a bucket for this service alone\) or "
            r"limiter= \(a TokenBucket shared between services\)$"
        ),
    ):
        ServiceBuilder().rate_limit()
    with pytest.raises(
        ValueError, match=r"^ServiceBuilder.rate_limit\(\) takes rate or limiter=, not both"
    ):
        ServiceBuilder().rate_limit(5, limiter=bucket)
    with pytest.raises(
        ValueError,
        match=r"^ServiceBuilder.rate_limit\(\): per and burst belong to the shared bucket",
    ):
        ServiceBuilder().rate_limit(per=60, limiter=bucket)
    with pytest.raises(ValueError, match=r"per and burst belong to the shared bucket"):
        ServiceBuilder().rate_limit(burst=2, limiter=bucket)
    with pytest.raises(TypeError, match=r"^limiter must be a TokenBucket .*, got int$"):
        ServiceBuilder().rate_limit(limiter=5)  # type: ignore[arg-type]


async def test_keyed_concurrency_limit_limits_each_key_on_its_own() -> None:
    inner, handle = mock_service()
    builder = ServiceBuilder().keyed_concurrency_limit(lambda r: r[0], {"a": 1}, default=2)
    (layer,) = builder.layers
    assert isinstance(layer, KeyedConcurrencyLimitLayer)
    svc = builder.service(inner)
    assert isinstance(svc, KeyedConcurrencyLimit)
    async with anyio.create_task_group() as tg:
        for request in [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 3)]:
            tg.start_soon(svc, request)
            await wait_all_tasks_blocked()
        assert handle.pending == 3  # a1 (limit 1), b1 and b2 (the default, 2)
        received = []
        for _ in range(5):
            request, responder = await handle.next_request()
            received.append(request)
            responder.send(None)
            await wait_all_tasks_blocked()
    assert received == [("a", 1), ("b", 1), ("b", 2), ("a", 2), ("b", 3)]


async def test_keyed_concurrency_limit_leaves_keys_without_a_limit_unlimited() -> None:
    inner, handle = mock_service()
    svc = ServiceBuilder().keyed_concurrency_limit(lambda r: r[0], {"a": 1}).service(inner)
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(svc, ("b", i))
        await wait_all_tasks_blocked()
        assert handle.pending == 4
        for _ in range(4):
            _, responder = await handle.next_request()
            responder.send(None)


def test_keyed_concurrency_limit_checks_its_arguments_at_once() -> None:
    async def key(request: object) -> str:
        return "a"

    builder = ServiceBuilder()
    with pytest.raises(TypeError, match=r"^key must be a plain \(synchronous\) function"):
        builder.keyed_concurrency_limit(key, {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^key must be a function, got str 'a'$"):
        builder.keyed_concurrency_limit("a", {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^limits\['a'\] must be >= 1, got 0$"):
        builder.keyed_concurrency_limit(str, {"a": 0})
    with pytest.raises(TypeError, match=r"^limits must be a mapping from key to max_in_flight"):
        builder.keyed_concurrency_limit(str, [("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^default must be >= 1, got 0$"):
        builder.keyed_concurrency_limit(str, {}, default=0)
    assert builder.layers == ()  # nothing was added by the refused calls
