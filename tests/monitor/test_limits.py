"""find_limits: every limit inside services and agents, once, labelled."""

from __future__ import annotations

import anyio
import pytest

from towerpy import (
    ConcurrencyLimiter,
    KeyedConcurrencyLimitLayer,
    ServiceBuilder,
    TokenBucket,
    service_fn,
)
from towerpy.llm import Agent, ParallelToolsLayer, ScriptedModel
from towerpy.monitor import LimitState, find_limits
from towerpy.tools import ToolInvocation, ToolRouter, tool

pytestmark = pytest.mark.anyio


@tool(concurrency_limit=3)
async def search(query: str) -> str:
    """Searches."""
    await anyio.sleep(1)
    return query


async def echo(request: object) -> object:
    return request


def test_an_agent_s_limits_are_found_in_its_step_and_its_tools() -> None:
    bucket = TokenBucket(2, burst=4)
    router = ToolRouter([search])
    tools = (
        ServiceBuilder()
        .layer(KeyedConcurrencyLimitLayer(lambda inv: inv.name, {"search": 2}))
        .service(router)
    )
    step = ServiceBuilder().rate_limit(limiter=bucket).service(ScriptedModel([]))
    agent = Agent(step, tools=tools, catalog=router)
    limits = find_limits(agent)
    assert [limit.name for limit in limits] == ["rate limit", "keyed limit", "concurrency limit"]
    states = [state for limit in limits for state in limit.states()]
    assert states == [
        LimitState("rate limit", "rate", capacity=4, waiting=0, tokens=4.0, rate=2.0),
        LimitState("keyed limit [search]", "concurrency", 0, 2, 0),
        LimitState("concurrency limit", "concurrency", 0, 3, 0),
    ]


def test_a_shared_limiter_is_one_limit_and_labels_name_what_they_hold() -> None:
    shared = ConcurrencyLimiter(4)
    a = ServiceBuilder().concurrency_limit(limiter=shared).service(service_fn(echo))
    b = ServiceBuilder().concurrency_limit(limiter=shared).rate_limit(9).service(service_fn(echo))
    limits = find_limits({"first": a, "second": b}, ServiceBuilder().rate_limit(1).service(a))
    assert [limit.name for limit in limits] == ["first", "second", "rate limit"]
    # a label over several limits names each
    two = find_limits({"model": b})
    assert [limit.name for limit in two] == ["model: concurrency limit", "model: rate limit"]
    # unlabelled limits of one kind are numbered
    three = find_limits(TokenBucket(1), TokenBucket(2))
    assert [limit.name for limit in three] == ["rate limit", "rate limit #2"]


async def test_a_keyed_limit_shows_its_keys_as_they_come() -> None:
    router = ToolRouter([search])
    tools = (
        ServiceBuilder()
        .layer(KeyedConcurrencyLimitLayer(lambda inv: inv.name, {}, default=1))
        .service(router)
    )
    (limit,) = find_limits(tools)[:1]
    assert limit.states() == []
    async with anyio.create_task_group() as group:
        for n in range(2):
            group.start_soon(
                tools, ToolInvocation(id=str(n), name="search", arguments={"query": "q"})
            )
        await anyio.sleep(0.5)
        assert limit.states() == [LimitState("keyed limit [search]", "concurrency", 1, 1, 1)]
    assert limit.states() == []


def test_a_parallel_tools_layer_s_router_is_followed() -> None:
    router = ToolRouter([search])
    step = ServiceBuilder().layer(ParallelToolsLayer(router)).service(ScriptedModel([]))
    assert [limit.name for limit in find_limits(step)] == ["concurrency limit"]
