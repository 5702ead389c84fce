"""The adapters report the quota's headers, and the layer runs at a simulated provider's quota.

The simulator (tests/llm/provider_sim.py) enforces a requests+tokens quota with buckets of its
own and answers real 429s; it is driven through the official SDK clients, in virtual time
through an in-process transport (exact and fast), and once on real sockets.
"""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from towerpy import RetryPolicy, ServiceBuilder, TokenBucket
from towerpy.errors import RateLimited
from towerpy.llm import ChatRequest, Message, ProviderQuotaLayer, RateLimitInfo, is_retryable

from .fake_provider import InProcessProvider, Reply, httpx_module
from .provider_kit import KITS, Kit
from .provider_sim import WARM_UP, Simulator, serve_in_thread

if TYPE_CHECKING:
    from towerpy import Service
    from towerpy.llm import StepOutcome

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.param
    return kit


def quota_headers(kit: Kit) -> dict[str, str]:
    if kit.name == "openai":
        return {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "29000",
            "x-ratelimit-reset-tokens": "2s",
        }
    soon = datetime.now(UTC).replace(microsecond=0).timestamp() + 3600
    instant = datetime.fromtimestamp(soon, UTC).isoformat().replace("+00:00", "Z")
    return {
        "anthropic-ratelimit-requests-limit": "500",
        "anthropic-ratelimit-requests-remaining": "499",
        "anthropic-ratelimit-requests-reset": instant,
        "anthropic-ratelimit-tokens-limit": "30000",
        "anthropic-ratelimit-tokens-remaining": "29000",
        "anthropic-ratelimit-tokens-reset": instant,
    }


def check_quota(info: RateLimitInfo | None) -> None:
    assert info is not None
    assert (info.limit_requests, info.remaining_requests) == (500, 499)
    assert (info.limit_tokens, info.remaining_tokens) == (30_000, 29_000)
    assert info.reset_requests is not None
    assert info.reset_tokens is not None


async def test_an_answer_carries_the_quota_its_headers_report(
    provider: Kit, in_process: InProcessProvider
) -> None:
    reply = provider.text("hi")
    in_process.queue(Reply(body=reply.body, headers=quota_headers(provider)), provider.text("x"))
    model = provider.model(in_process)
    request = ChatRequest(messages=[Message.user("hi")])
    outcome = await model(request)
    check_quota(outcome.rate_limits)
    assert outcome.messages[-1].content == "hi"
    assert (await model(request)).rate_limits is None  # no rate-limit header, no info


async def test_a_429_carries_the_quota_its_headers_report(
    provider: Kit, in_process: InProcessProvider
) -> None:
    headers = {**quota_headers(provider), "retry-after": "2"}
    in_process.queue(Reply(429, provider.error("slow down", "rate_limit_error"), headers))
    model = provider.model(in_process)
    with pytest.raises(RateLimited) as caught:
        await model(ChatRequest(messages=[Message.user("hi")]))
    check_quota(caught.value.rate_limits)
    assert caught.value.retry_after == 2.0


# -- against the simulator, in virtual time ---------------------------------------------------


def sim_client(kit: Kit, simulator: Simulator, **options: Any) -> Any:
    sdk = kit.sdk
    hx = httpx_module(sdk.DefaultAsyncHttpxClient)
    options.setdefault("max_retries", 0)
    http = sdk.DefaultAsyncHttpxClient(transport=simulator.transport(hx))
    if kit.name == "openai":
        return sdk.AsyncOpenAI(
            base_url="http://sim.test/v1", api_key="k", http_client=http, **options
        )
    return sdk.AsyncAnthropic(base_url="http://sim.test", api_key="k", http_client=http, **options)


async def sim_model(kit: Kit, simulator: Simulator, **options: Any) -> Any:
    """A step service on the simulator through the SDK, warmed up (see provider_sim.WARM_UP)."""
    from towerpy.llm import AnthropicModel, OpenAIChatModel

    client = sim_client(kit, simulator)
    cls = OpenAIChatModel if kit.name == "openai" else AnthropicModel
    model = cls("sim", client=client, max_tokens=300, **options)
    await model(ChatRequest(messages=[Message.user("warm")], model=WARM_UP))
    return model


def estimate(request: ChatRequest) -> int:
    from towerpy.llm import estimate_tokens

    return estimate_tokens(request, output_tokens=300)


async def run_agents(
    model: Service[ChatRequest, StepOutcome], agents: int, seconds: float, seed: int = 7
) -> list[float]:
    """Each agent calls the model in a loop for ``seconds``; returns every call's latency."""
    latencies: list[float] = []
    end = anyio.current_time() + seconds

    async def agent(rng: random.Random) -> None:
        while anyio.current_time() < end:
            prompt = "x" * rng.randrange(1000, 8000) + f" out={rng.randrange(20, 300)}"
            start = anyio.current_time()
            with contextlib.suppress(RateLimited):
                await model(ChatRequest(messages=[Message.user(prompt)]))
            latencies.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        for n in range(agents):
            tg.start_soon(agent, random.Random(seed * 1000 + n))
    return latencies


async def test_the_simulator_enforces_its_quota_and_the_sdk_retries_meet_its_429s(
    provider: Kit,
) -> None:
    simulator = Simulator(requests=20, tokens=20_000, per=1.0, clock=anyio.current_time)
    # the SDK retries on its own (twice, honouring retry-after): nobody shares what a 429 says
    model = await sim_model(provider, simulator, sdk_max_retries=2)
    await run_agents(model, agents=20, seconds=5.0)
    stats = simulator.stats
    assert stats.rate_limited / stats.requests > 0.2
    # it never admits more than its quota: burst plus rate x time, in requests and in tokens
    assert stats.first is not None
    assert stats.last is not None
    elapsed = stats.last - stats.first
    assert stats.ok <= 20 + 20 * elapsed
    assert stats.tokens_reported <= 20_000 * (1 + elapsed)


@pytest.mark.parametrize("numbers", [False, True], ids=["learned", "given"])
async def test_the_layer_runs_50_agents_at_the_quota_with_almost_no_429(
    provider: Kit, numbers: bool
) -> None:
    simulator = Simulator(requests=20, tokens=20_000, per=1.0, clock=anyio.current_time)
    layer = (
        ProviderQuotaLayer(requests=20, tokens=20_000, per=1.0, estimate=estimate)
        if numbers
        else ProviderQuotaLayer(per=1.0, estimate=estimate)
    )
    model = (
        ServiceBuilder()
        .retry(RetryPolicy(5, retry_on=is_retryable))
        .layer(layer)
        .service(await sim_model(provider, simulator))
    )
    seconds = 10.0
    start = anyio.current_time()
    await run_agents(model, agents=50, seconds=seconds)
    stats = simulator.stats
    assert stats.rate_limited <= stats.requests / 100
    # goodput: the tokens reported, against the most the quota lets through in that time
    elapsed = anyio.current_time() - start
    assert stats.tokens_reported >= 0.9 * 20_000 * elapsed
    learned = layer.statistics()
    assert (learned.requests_limit, learned.tokens_limit) == (20, 20_000)


async def test_a_fleet_shares_one_bucket_and_one_pause(provider: Kit) -> None:
    simulator = Simulator(requests=20, tokens=20_000, per=1.0, clock=anyio.current_time)
    requests = TokenBucket(20, per=1.0)
    tokens = TokenBucket(20_000, per=1.0)
    # two "processes": two layers, two clients, one pair of buckets
    models = [
        ServiceBuilder()
        .retry(RetryPolicy(5, retry_on=is_retryable))
        .provider_quota(requests=requests, tokens=tokens, per=1.0, estimate=estimate)
        .service(await sim_model(provider, simulator))
        for _ in range(2)
    ]
    async with anyio.create_task_group() as tg:
        for model in models:
            tg.start_soon(run_agents, model, 25, 10.0)
    stats = simulator.stats
    # the shared buckets start full, as their owner made them: the first burst may meet one
    assert stats.rate_limited <= 1
    assert stats.ok > 180


# -- on real sockets ------------------------------------------------------------------------


@pytest.mark.real_clock
async def test_the_simulator_on_real_sockets_answers_429s_the_sdks_read(provider: Kit) -> None:
    simulator = Simulator(requests=2, tokens=100_000, per=60.0, base_latency=0.0)
    with serve_in_thread(simulator) as url:
        sdk = provider.sdk
        base = f"{url}/v1" if provider.name == "openai" else url
        client_class = sdk.AsyncOpenAI if provider.name == "openai" else sdk.AsyncAnthropic
        client = client_class(base_url=base, api_key="k", max_retries=0)
        from towerpy.llm import AnthropicModel, OpenAIChatModel

        cls = OpenAIChatModel if provider.name == "openai" else AnthropicModel
        layer = ProviderQuotaLayer(estimate=estimate)
        async with client, cls("sim", client=client) as model:
            quota = layer.layer(model)
            request = ChatRequest(messages=[Message.user("hello out=10")])
            outcome = await model(request)
            info = outcome.rate_limits
            assert info is not None
            assert (info.limit_requests, info.remaining_requests) == (2, 1)
            assert info.limit_tokens == 100_000
            await model(request)
            with pytest.raises(RateLimited) as caught:
                await quota(request)  # the third within a minute: 429
        error = caught.value
        assert error.retry_after is not None
        assert 25.0 < error.retry_after <= 30.0
        assert error.rate_limits is not None
        assert error.rate_limits.remaining_requests == 0
        stats = layer.statistics()
        assert (stats.rate_limited, stats.requests_limit) == (1, 2)
        assert 25.0 < stats.pause_left <= 30.0
