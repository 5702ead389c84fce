"""What type checkers must infer for services, middleware and builders: checked, not run.

mypy (the CI's `mypy` step, and tests/test_typing.py) and pyright (tests/test_typing.py) check
this file. Each `assert_type` is an expectation; each `# type: ignore[...]` marks a mistake that
must be reported there (an unneeded one is itself an error: mypy's `warn_unused_ignores`,
pyright's `reportUnnecessaryTypeIgnoreComment`). A `# pyright: ignore[...]` marks what pyright
alone reports (mypy does not read them), so that docs/concepts.md stays true of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, assert_type

from typing_extensions import override

from towerpy import (
    Balance,
    CircuitBreaker,
    CircuitBreakerLayer,
    ConcurrencyLimiter,
    ConcurrencyLimitLayer,
    FallbackLayer,
    HedgeLayer,
    Identity,
    LayerFn,
    Middleware,
    RetryPolicy,
    Service,
    ServiceBuilder,
    TimeoutLayer,
    TokenBucket,
    Unchanged,
    layer_fn,
    option_layer,
    service_fn,
)
from towerpy.llm import Agent, AgentResult, ChatRequest, Message, ParallelToolsLayer, StepOutcome
from towerpy.tools import JoinPolicy
from towerpy.workflow import MapReduce, Parallel, Sequential

if TYPE_CHECKING:
    from towerpy.tools import ToolInvocation, ToolOutput

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@dataclass
class Job:
    name: str


async def count(request: str) -> int:
    return len(request)


async def run_job(job: Job) -> int:
    return len(job.name)


def parse(text: str) -> Job:
    return Job(text)


def describe(size: int) -> str:
    return f"{size} characters"


class LogRequests(Middleware[str, str]):
    """The docs' example: `Middleware[Req, Resp]` wraps a `Service[Req, Resp]`."""

    @override
    async def call(self, request: str) -> str:
        assert_type(self.inner, Service[str, str])
        response = await self.inner(request)
        assert_type(response, str)
        return response


class ParseJobs(Middleware[str, int, Job, int]):
    """A middleware that changes the request type names the inner service's types too."""

    @override
    async def call(self, request: str) -> int:
        assert_type(self.inner, Service[Job, int])
        return await self.inner(parse(request))


class Log(Middleware[ReqT, RespT]):
    """A generic middleware: it fits any service and keeps its types."""

    @override
    async def call(self, request: ReqT) -> RespT:
        assert_type(self.inner, Service[ReqT, RespT])
        return await self.inner(request)


def wrap_jobs(inner: Service[Job, int]) -> Service[str, int]:
    return ParseJobs(inner)


async def layers_that_keep_types_keep_the_builders(
    router: Service[ToolInvocation, ToolOutput],
) -> None:
    builder = ServiceBuilder()
    assert_type(builder, ServiceBuilder[Unchanged, Unchanged])
    assert_type(builder, ServiceBuilder[Unchanged, Unchanged, Unchanged, Unchanged])
    stacked = (
        builder.retry(RetryPolicy())
        .timeout(1.0)
        .concurrency_limit(4)
        .concurrency_limit(limiter=ConcurrencyLimiter(4))
        .keyed_concurrency_limit(lambda request: request, {"a": 1}, default=2)
        .rate_limit(10, per=60, burst=2)
        .rate_limit(limiter=TokenBucket(10))
        .load_shed()
        .buffer(8)
        .map_err(lambda exc: exc)
        .layer(TimeoutLayer(1.0))
        .layer(ConcurrencyLimitLayer(2))
        .layer(Identity())
        .layer(layer_fn(Log))
        .option_layer(None)
        .option_layer(TimeoutLayer(1.0))
        .option_layer(option_layer(None))
    )
    assert_type(stacked, ServiceBuilder[Unchanged, Unchanged])
    svc = stacked.service(service_fn(count))
    assert_type(svc, Service[str, int])
    assert_type(await svc("text"), int)
    await svc(42)  # type: ignore[arg-type]
    # a stack with no types of its own fits any service
    assert_type(stacked.service(service_fn(run_job)), Service[Job, int])


async def map_request_and_map_response_change_the_types() -> None:
    parsed = ServiceBuilder().map_request(parse)
    assert_type(parsed, ServiceBuilder[str, Unchanged, Job, Unchanged])
    assert_type(parsed.timeout(1.0).service(service_fn(run_job)), Service[str, int])
    parsed.service(service_fn(count))  # type: ignore[arg-type]

    described = ServiceBuilder().map_response(describe)
    assert_type(described, ServiceBuilder[Unchanged, str, Unchanged, int])
    assert_type(described.service(service_fn(count)), Service[str, str])

    both = ServiceBuilder().map_request(parse).map_response(describe)
    assert_type(both, ServiceBuilder[str, str, Job, int])
    assert_type(both.service(service_fn(run_job)), Service[str, str])
    both.service(service_fn(count))  # type: ignore[arg-type]

    # the first added is the outermost: requests pass `bytes.decode`, then `parse`
    chained = ServiceBuilder().map_request(bytes.decode).map_request(parse)
    assert_type(chained.service(service_fn(run_job)), Service[bytes, int])
    ServiceBuilder().map_request(parse).map_request(bytes.decode)  # type: ignore[arg-type]
    # responses come back through the inner map first: `len` gives the int `describe` takes
    sized = ServiceBuilder().map_response(describe).map_response(len)
    assert_type(sized.service(service_fn(ShortJobs().call)), Service[str, str])

    # a builder of named types gives a lambda its parameter's type
    typed = ServiceBuilder[str, int]().map_request(lambda text: text.strip())
    assert_type(typed.service(service_fn(count)), Service[str, int])
    # before anything fixed the type, mypy gives a lambda's parameter Any; pyright, a type of
    # which nothing is known (docs/concepts.md says so)
    untyped = ServiceBuilder().map_request(lambda text: text.strip())  # pyright: ignore[reportUnknownVariableType, reportUnknownLambdaType, reportUnknownMemberType, reportAttributeAccessIssue]
    assert_type(untyped, ServiceBuilder[Any, Unchanged, Any, Unchanged])


class ShortJobs:
    async def call(self, request: str) -> list[str]:
        return [request]


async def concretely_typed_layers_change_the_types(
    router: Service[ToolInvocation, ToolOutput], step: Service[ChatRequest, StepOutcome]
) -> None:
    jobs_layer = layer_fn(ParseJobs)
    assert_type(jobs_layer, LayerFn[Job, int, str, int])
    jobs = ServiceBuilder().timeout(1.0).layer(jobs_layer)
    assert_type(jobs, ServiceBuilder[str, int, Job, int])
    assert_type(jobs.retry(RetryPolicy()).service(service_fn(run_job)), Service[str, int])
    jobs.service(service_fn(count))  # type: ignore[arg-type]
    assert_type(ServiceBuilder().layer(layer_fn(wrap_jobs)), ServiceBuilder[str, int, Job, int])

    # a layer generic over the step services it fits keeps the types of the one it wraps
    # (pyright widens the request to the layer's StepRequest protocol: still a fit)
    tools = ServiceBuilder().layer(ParallelToolsLayer(router))
    stepped: Service[ChatRequest, StepOutcome] = tools.timeout(30.0).service(step)
    assert stepped is not None

    # a concrete layer must fit what the layers above it send; it fixes an Unchanged side
    assert_type(
        ServiceBuilder().map_request(str.strip).layer(jobs_layer),
        ServiceBuilder[str, int, Job, int],
    )
    ServiceBuilder().map_request(parse).layer(jobs_layer)  # type: ignore[arg-type]

    # a lambda that builds a middleware of fixed types: fine for mypy, reported by pyright
    tagged = layer_fn(lambda inner: LogRequests(inner))  # pyright: ignore[reportArgumentType]
    assert_type(tagged, LayerFn[Any, Any, str, str])
    partly = ServiceBuilder().layer(layer_fn(partial(ParseJobs)))  # how pyright users write it
    assert_type(partly.service(service_fn(run_job)), Service[str, int])

    # None adds nothing, so an optional layer must keep the types it is given
    logged = ServiceBuilder().option_layer(layer_fn(LogRequests))
    assert_type(logged, ServiceBuilder[str, str])
    ServiceBuilder().option_layer(jobs_layer)  # type: ignore[arg-type]


def a_bare_annotation_is_a_builder_that_keeps_types() -> ServiceBuilder:
    return ServiceBuilder().timeout(1.0)


def a_named_builder_can_be_annotated() -> ServiceBuilder[str, Unchanged, Job, Unchanged]:
    return ServiceBuilder().map_request(parse)


async def resilience_layers_keep_or_fix_the_types(
    step: Service[ChatRequest, StepOutcome], backup: Service[ChatRequest, StepOutcome]
) -> None:
    kept = (
        ServiceBuilder()
        .circuit_breaker(3, 10.0)
        .circuit_breaker(breaker=CircuitBreaker())
        .hedge(1.0, idempotent=lambda request: True)
        .layer(CircuitBreakerLayer())
        .layer(HedgeLayer())
    )
    assert_type(kept, ServiceBuilder[Unchanged, Unchanged])
    assert_type(kept.service(service_fn(count)), Service[str, int])

    # before anything fixed the types, a fallback fixes them; the service must fit it
    backed = ServiceBuilder().fallback(backup)
    assert_type(backed, ServiceBuilder[ChatRequest, StepOutcome, ChatRequest, StepOutcome])
    assert_type(backed.timeout(5.0).service(step), Service[ChatRequest, StepOutcome])
    backed.service(service_fn(count))  # type: ignore[arg-type]
    assert_type(
        ServiceBuilder().layer(FallbackLayer(backup)),
        ServiceBuilder[ChatRequest, StepOutcome, ChatRequest, StepOutcome],
    )
    # after a map_request, the fallback takes what reaches it
    parsed = ServiceBuilder().map_request(parse).fallback(service_fn(run_job))
    assert_type(parsed, ServiceBuilder[str, int, Job, int])
    assert_type(parsed.service(service_fn(run_job)), Service[str, int])
    ServiceBuilder().map_request(parse).fallback(service_fn(count))  # type: ignore[arg-type]

    # a balance has its endpoints' types
    balanced = Balance([step, backup])
    assert_type(balanced, Balance[ChatRequest, StepOutcome])
    assert_type(
        ServiceBuilder().circuit_breaker().service(balanced), Service[ChatRequest, StepOutcome]
    )


def workflows_keep_the_types_of_their_steps(agent: Agent) -> None:
    counted = Sequential(service_fn(count), service_fn(describe_async))
    assert_type(counted, Sequential[str, str])
    both = Parallel(service_fn(count), service_fn(count))
    assert_type(both, Parallel[str, int])
    isolated = Parallel(service_fn(count), policy=JoinPolicy.ISOLATE)
    assert_type(isolated, Parallel[str, int | Exception])
    total = MapReduce(service_fn(count), lambda acc, n: acc + n, initial=0)
    assert_type(total, MapReduce[str, int, int])
    runs: Service[str | list[Message], AgentResult] = agent
    assert runs is not None


async def describe_async(size: int) -> str:
    return str(size)
