"""The provider adapters under the limit layers: timeouts, and token budgets settled by usage.

Wire tests use the real SDK clients on real sockets against a local server (on the real clock,
never sleeping to synchronise); time-dependent checks run in virtual time through an in-process
transport, where waits are exact.
"""

from __future__ import annotations

import anyio
import pytest

from towerpy import Elapsed, RateLimitLayer, ServiceBuilder, TimeoutLayer, TokenBucket
from towerpy.llm import ChatRequest, Message, StepOutcome, is_retryable

from .fake_provider import FakeProvider, InProcessProvider, Reply
from .provider_kit import KITS, Kit

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.param
    return kit


async def test_a_timeout_cancels_a_hanging_provider_call_in_virtual_time(
    provider: Kit, in_process: InProcessProvider
) -> None:
    in_process.queue(provider.text("warm"), Reply(hang=True), provider.text("fast now"))
    inner = provider.model(in_process)
    request = ChatRequest(messages=[Message.user("hi")])
    # the OpenAI SDK's first request detects the platform in a worker thread; a virtual clock
    # jumps to the next deadline while a thread works, so get that done before timing anything
    await inner(request)
    model = TimeoutLayer(5.0).layer(inner)
    start = anyio.current_time()
    with pytest.raises(Elapsed):
        await model(request)
    assert anyio.current_time() - start == 5.0
    assert len(in_process.requests) == 2
    assert is_retryable(Elapsed("x"))
    assert (await model(request)).messages[-1].content == "fast now"


@pytest.mark.real_clock
@pytest.mark.timeout(20)  # the SDK's own read timeout is 10 minutes: only the layer ends this
async def test_a_timeout_layer_around_a_hanging_server_returns_promptly(
    provider: Kit, fake_provider: FakeProvider
) -> None:
    fake_provider.queue(Reply(hang=True), provider.text("back"))
    model = provider.model(fake_provider)
    timed = TimeoutLayer(0.3).layer(model)
    request = ChatRequest(messages=[Message.user("hi")])
    async with model.client:
        with pytest.raises(Elapsed):
            await timed(request)
        assert len(fake_provider.requests) == 1
        # the cancelled request left the client usable: the next one (a new connection, on a
        # machine that may be busy) is bounded generously, well inside the test's timeout
        patient = TimeoutLayer(10).layer(model)
        assert (await patient(request)).messages[-1].content == "back"


async def test_usage_settles_a_token_bucket(provider: Kit, in_process: InProcessProvider) -> None:
    # 100 tokens a second, at most 1000; every request is estimated at 600 tokens
    bucket = TokenBucket(6000, per=60.0, burst=1000)
    in_process.queue(
        provider.text("a", usage=(150, 50)),  # 200 used: 400 of the estimate come back
        provider.text("b", usage=(1000, 100)),  # 1100 used: 500 more are charged (debt)
        provider.text("c", usage=(400, 200)),
    )

    def actual(request: ChatRequest, outcome: StepOutcome) -> float:
        assert outcome.usage is not None
        return outcome.usage.total_tokens

    model = (
        ServiceBuilder()
        .layer(RateLimitLayer(limiter=bucket, cost=lambda request: 600, actual_cost=actual))
        .service(provider.model(in_process))
    )
    request = ChatRequest(messages=[Message.user("hi")])
    for _ in range(3):
        await model(request)
    a, b, c = (recorded.at for recorded in in_process.requests)
    assert b - a == 0.0  # 1000 - 600 + 400 = 800 left: the second estimate fits at once
    # 800 - 600 - 500 = -300: the third needs 900 more tokens, 9 seconds at 100 a second
    assert c - b == 9.0
