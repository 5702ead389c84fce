"""What the SDKs raise becomes RateLimited / ProviderUnavailable / ProviderError, in detail."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import anyio
import pytest

from towerpy.errors import (
    Elapsed,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ToolNotFound,
)
from towerpy.llm import AnthropicModel, ChatRequest, Message, OpenAIChatModel, is_retryable

from .fake_provider import InProcessProvider, Reply, httpx_module
from .provider_kit import KITS, OPENAI, Kit, openai_error

pytestmark = pytest.mark.anyio

REQUEST = ChatRequest(messages=[Message.user("hi")])


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    result: Kit = request.param
    return result


async def fail_with(provider: Kit, fake: InProcessProvider, reply: Any) -> ProviderError:
    fake.queue(reply)
    with pytest.raises(ProviderError) as raised:
        await provider.model(fake)(REQUEST)
    assert len(fake.requests) == 1  # the SDK did not retry on its own
    return raised.value


async def test_429_is_rate_limited_with_retry_after_ms_request_id_and_the_sdk_error_as_cause(
    provider: Kit, in_process: InProcessProvider
) -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "2", provider.request_id_header: "req_42"}
    error = await fail_with(
        provider, in_process, Reply(429, provider.error("slow down", "rate_limit_error"), headers)
    )
    assert type(error) is RateLimited
    assert (error.status_code, error.retry_after, error.retryable) == (429, 1.5, True)
    assert error.request_id == "req_42"
    assert error.provider == provider.name
    assert isinstance(error.__cause__, provider.sdk.RateLimitError)
    assert "HTTP 429" in str(error)
    assert "slow down" in str(error)
    assert "req_42" in str(error)


async def test_retry_after_in_seconds_and_as_an_http_date_are_read(
    provider: Kit, in_process: InProcessProvider
) -> None:
    seconds = await fail_with(
        provider,
        in_process,
        Reply(429, provider.error("x", "rate_limit_error"), {"retry-after": "7"}),
    )
    assert seconds.retry_after == 7.0
    in_process = InProcessProvider()
    # the date form is absolute wall-clock time, rounded to whole seconds
    date = formatdate(time.time() + 120, usegmt=True)
    dated = await fail_with(
        provider,
        in_process,
        Reply(429, provider.error("x", "rate_limit_error"), {"retry-after": date}),
    )
    assert dated.retry_after is not None
    assert 100 < dated.retry_after <= 120
    in_process = InProcessProvider()
    none = await fail_with(
        provider, in_process, Reply(429, provider.error("x", "rate_limit_error"))
    )
    assert none.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
async def test_5xx_and_overload_are_provider_unavailable_and_retryable(
    provider: Kit, in_process: InProcessProvider, status: int
) -> None:
    error = await fail_with(
        provider, in_process, Reply(status, provider.error("boom", "api_error"))
    )
    assert type(error) is ProviderUnavailable
    assert (error.status_code, error.retryable) == (status, True)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_client_errors_are_plain_provider_errors_that_are_not_retryable(
    provider: Kit, in_process: InProcessProvider, status: int
) -> None:
    error = await fail_with(
        provider, in_process, Reply(status, provider.error("bad", "invalid_request_error"))
    )
    assert type(error) is ProviderError
    assert (error.status_code, error.retryable) == (status, False)
    assert not is_retryable(error)


@pytest.mark.parametrize("status", [408, 409])
async def test_timeouts_and_conflicts_from_the_server_are_retryable(
    provider: Kit, in_process: InProcessProvider, status: int
) -> None:
    error = await fail_with(provider, in_process, Reply(status, provider.error("again", "x")))
    assert error.retryable


async def test_x_should_retry_overrides_the_status_both_ways(
    provider: Kit, in_process: InProcessProvider
) -> None:
    no = await fail_with(
        provider,
        in_process,
        Reply(503, provider.error("down", "api_error"), {"x-should-retry": "false"}),
    )
    assert type(no) is ProviderUnavailable
    assert not no.retryable
    in_process = InProcessProvider()
    yes = await fail_with(
        provider, in_process, Reply(400, provider.error("odd", "x"), {"x-should-retry": "true"})
    )
    assert yes.retryable


async def test_an_exhausted_quota_is_rate_limited_but_not_retryable(
    in_process: InProcessProvider,
) -> None:
    body = openai_error(
        "You exceeded your current quota", "insufficient_quota", "insufficient_quota"
    )
    error = await fail_with(OPENAI, in_process, Reply(429, body))
    assert type(error) is RateLimited
    assert not error.retryable


async def test_connection_errors_and_timeouts_are_provider_unavailable(
    provider: Kit, in_process: InProcessProvider
) -> None:
    hx = httpx_module(provider.sdk.DefaultAsyncHttpxClient)
    in_process.queue(hx.ConnectError("connection refused"), hx.ReadTimeout("read timed out"))
    model = provider.model(in_process)
    with pytest.raises(ProviderUnavailable, match="connection failed") as refused:
        await model(REQUEST)
    assert (refused.value.status_code, refused.value.retryable) == (None, True)
    assert isinstance(refused.value.__cause__, provider.sdk.APIConnectionError)
    with pytest.raises(ProviderUnavailable, match="request timed out") as timed_out:
        await model(REQUEST)
    assert timed_out.value.retryable
    assert isinstance(timed_out.value.__cause__, provider.sdk.APITimeoutError)
    assert len(in_process.requests) == 2


@pytest.mark.real_clock
async def test_a_real_refused_connection_is_provider_unavailable(provider: Kit) -> None:
    # nothing listens on port 9 (discard) of 127.0.0.1 in the test environment
    with anyio.fail_after(30):
        model = (
            OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", api_key="k")
            if provider.name == "openai"
            else AnthropicModel("m", base_url="http://127.0.0.1:9", api_key="k")
        )
        async with model:
            with pytest.raises(ProviderUnavailable) as raised:
                await model(REQUEST)
    assert raised.value.retryable


def test_is_retryable_is_a_predicate_over_any_exception() -> None:
    assert is_retryable(RateLimited("x", retryable=True))
    assert not is_retryable(RateLimited("x", retryable=False))
    assert is_retryable(ProviderUnavailable("x", retryable=True))
    assert is_retryable(Elapsed("timed out", seconds=1.0))
    assert not is_retryable(ProviderError("x"))
    assert not is_retryable(ValueError("bug"))
    assert not is_retryable(ToolNotFound("nope"))
    assert not is_retryable(Overloaded("shed"))
