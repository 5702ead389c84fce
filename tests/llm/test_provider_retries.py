"""Provider adapters under RetryLayer: is_retryable, Retry-After, and the documented stack.

Waits are checked in virtual time through an in-process transport (exact); one test runs over
HTTP on the real clock, with the wait measured by the server.
"""

from __future__ import annotations

import anyio
import pytest

from towerpy import (
    ExponentialBackoff,
    ProviderError,
    ProviderUnavailable,
    RateLimitLayer,
    RetryLayer,
    RetryPolicy,
    ServiceBuilder,
    TokenBucket,
)
from towerpy.llm import ChatRequest, Message, StepOutcome, is_retryable

from .fake_provider import FakeProvider, InProcessProvider, Reply
from .provider_kit import KITS, Kit

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.param
    return kit


async def test_a_429_is_retried_after_retry_after_ms_with_exactly_two_requests(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(
        Reply(429, provider.error("slow down", "rate_limit_error"), {"retry-after-ms": "1500"}),
        provider.text("ok"),
    )
    policy = RetryPolicy(
        3, backoff=ExponentialBackoff(base=0.1, jitter=False), retry_on=is_retryable
    )
    model = RetryLayer(policy).layer(provider.model(in_process))
    outcome = await model(ChatRequest(messages=[Message.user("hi")]))
    assert outcome.messages[-1].content == "ok"
    first, second = in_process.requests
    assert second.at - first.at == 1.5  # the header's wait, not the 0.1 s backoff


@pytest.mark.real_clock
async def test_a_429_over_http_is_retried_once_the_server_allows_it(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    fake_provider.queue(
        Reply(429, provider.error("slow down", "rate_limit_error"), {"retry-after-ms": "200"}),
        provider.text("ok"),
    )
    policy = RetryPolicy(3, backoff=ExponentialBackoff(base=0.01), retry_on=is_retryable)
    model = provider.model(fake_provider)
    async with model.client:
        outcome = await RetryLayer(policy).layer(model)(ChatRequest(messages=[Message.user("hi")]))
    assert outcome.messages[-1].content == "ok"
    first, second = fake_provider.requests
    assert second.at - first.at >= 0.2  # measured by the server: the retry waited the header


async def test_is_retryable_retries_a_500_and_gives_up_at_once_on_a_400(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(
        Reply(500, provider.error("boom")),
        provider.text("recovered"),
        Reply(400, provider.error("bad request", "invalid_request_error")),
    )
    policy = RetryPolicy(
        5, backoff=ExponentialBackoff(base=0.5, jitter=False), retry_on=is_retryable
    )
    model = RetryLayer(policy).layer(provider.model(in_process))
    request = ChatRequest(messages=[Message.user("hi")])
    assert (await model(request)).messages[-1].content == "recovered"
    assert len(in_process.requests) == 2
    with pytest.raises(ProviderError) as raised:
        await model(request)
    assert type(raised.value) is ProviderError
    assert raised.value.status_code == 400
    assert len(in_process.requests) == 3  # not retried


async def test_a_provider_unavailable_after_the_last_try_propagates_unchanged(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(*[Reply(503, provider.error("down"))] * 3)
    policy = RetryPolicy(
        3, backoff=ExponentialBackoff(base=1.0, jitter=False), retry_on=is_retryable
    )
    model = RetryLayer(policy).layer(provider.model(in_process))
    start = anyio.current_time()
    with pytest.raises(ProviderUnavailable) as raised:
        await model(ChatRequest(messages=[Message.user("hi")]))
    assert raised.value.status_code == 503
    assert len(in_process.requests) == 3
    assert anyio.current_time() - start == 3.0  # waits of 1 and 2 seconds


async def test_the_documented_token_per_minute_stack_runs(
    provider: Kit, in_process: InProcessProvider
) -> None:
    max_output = 1_000

    def estimate(request: ChatRequest) -> float:
        chars = sum(len(m.content or "") for m in request.messages)
        return chars / 4 + max_output

    def actual(request: ChatRequest, outcome: StepOutcome) -> float:
        return outcome.usage.total_tokens if outcome.usage else estimate(request)

    tpm = TokenBucket(30_000, per=60.0)
    model = (
        ServiceBuilder()
        .retry(RetryPolicy(max_attempts=4, retry_on=is_retryable))
        .layer(RateLimitLayer(limiter=tpm, cost=estimate, actual_cost=actual))
        .timeout(120)
        .service(provider.model(in_process))
    )
    # 8000 characters: estimated at 3000 tokens; 2400 used, so the next 27 tries need no wait
    prompt = "x" * 8000
    in_process.queue(*[provider.text("ok", usage=(2000, 400)) for _ in range(12)])
    for _ in range(12):
        await model(ChatRequest(messages=[Message.user(prompt)]))
    # 12 x 2400 = 28 800 <= 30 000: the last estimate (3000) fits after the refunds
    assert in_process.requests[-1].at == in_process.requests[0].at
