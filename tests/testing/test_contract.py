"""Every service with capacity keeps the ready()/call() contract: one suite, every factory."""

from __future__ import annotations

from typing import Any

import pytest
from typing_extensions import override

from towerpy import (
    Buffer,
    ConcurrencyLimit,
    KeyedConcurrencyLimit,
    LoadShed,
    Middleware,
    RateLimit,
    Service,
    Timeout,
    lowlevel,
)
from towerpy.llm import ChatRequest, Message, ProviderQuota
from towerpy.testing import ServiceContract
from towerpy.tools import tool

pytestmark = pytest.mark.anyio

LONG = 1e6  # a rate limit's period: no token comes back during a check


def _mock(inner: Any, capacity: int) -> Service[Any, Any]:
    inner.handle.allow(capacity)
    return inner  # type: ignore[no-any-return]


def _tool(inner: Service[Any, Any], capacity: int) -> Service[Any, Any]:
    @tool(concurrency_limit=capacity)
    async def relay(text: str) -> Any:
        """Relays the text to the inner service."""
        return await inner(text)

    return relay


FACTORIES: dict[str, ServiceContract] = {
    "ConcurrencyLimit": ServiceContract(lambda inner, n: ConcurrencyLimit(inner, n)),
    "RateLimit": ServiceContract(
        lambda inner, n: RateLimit(inner, n, per=LONG * n), capacity_returns=False
    ),
    "RateLimit(cost=)": ServiceContract(
        lambda inner, n: RateLimit(inner, n, per=LONG * n, cost=lambda request: 1),
        ready_reserves=False,
        capacity_returns=False,
    ),
    "KeyedConcurrencyLimit": ServiceContract(
        lambda inner, n: KeyedConcurrencyLimit(inner, lambda request: "k", {"k": n}),
        ready_reserves=False,
    ),
    "Buffer": ServiceContract(lambda inner, n: Buffer(inner, n)),
    "LoadShed(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: LoadShed(ConcurrencyLimit(inner, n)), sheds=True
    ),
    "LoadShed(Buffer)": ServiceContract(lambda inner, n: LoadShed(Buffer(inner, n)), sheds=True),
    "Timeout(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: Timeout(ConcurrencyLimit(inner, n), LONG)
    ),
    "Tool(concurrency_limit=)": ServiceContract(_tool, request={"text": "request"}),
    "MockService": ServiceContract(_mock, capacity_returns=False),
    "ProviderQuota": ServiceContract(
        lambda inner, n: ProviderQuota(inner, requests=n, per=LONG * n, learn=False),
        request=ChatRequest(messages=[Message.user("request")]),
        ready_reserves=False,
        capacity_returns=False,
    ),
}

CASES = [
    pytest.param(name, check, id=f"{name}-{check}")
    for name, contract in FACTORIES.items()
    for check in contract.checks()
]


@pytest.mark.parametrize(("factory", "check"), CASES)
async def test_every_service_with_capacity_keeps_the_contract(factory: str, check: str) -> None:
    await FACTORIES[factory].check(check)


class Leaky(Middleware[Any, Any], direct_call=True):
    """A broken limit: its ready() reserves, but a failed call never gives the permit back."""

    def __init__(self, inner: Service[Any, Any], capacity: int) -> None:
        super().__init__(inner)
        self.limit = ConcurrencyLimit(inner, capacity).limiter

    @override
    async def ready(self) -> None:
        await lowlevel.reserve(self, self.limit.acquire, self.limit.release, self.inner)

    @override
    async def try_ready(self) -> bool:
        limit = self.limit
        return await lowlevel.try_reserve(self, limit.try_acquire, limit.release, self.inner)

    @override
    async def call(self, request: Any) -> Any:
        permit = await lowlevel.take_or_acquire(self, self.limit.acquire)
        result = await self.inner(request)
        self.limit.release(permit)  # not in a finally: lost when the call fails
        return result


async def test_the_suite_catches_a_layer_that_keeps_the_capacity_of_a_failed_call() -> None:
    contract = ServiceContract(Leaky)
    with pytest.raises(AssertionError, match="ended by raise kept its capacity"):
        await contract.check("a_running_call_gives_its_capacity_back_however_it_ends")


async def test_the_suite_runs_whole_for_a_layer_of_ones_own() -> None:
    class Limit(Middleware[Any, Any], direct_call=True):
        def __init__(self, inner: Service[Any, Any], capacity: int) -> None:
            super().__init__(inner)
            self.limiter = ConcurrencyLimit(inner, capacity).limiter

        @override
        async def ready(self) -> None:
            limiter = self.limiter
            await lowlevel.reserve(self, limiter.acquire, limiter.release, self.inner)

        @override
        async def try_ready(self) -> bool:
            limiter = self.limiter
            return await lowlevel.try_reserve(
                self, limiter.try_acquire, limiter.release, self.inner
            )

        @override
        async def call(self, request: Any) -> Any:
            permit = await lowlevel.take_or_acquire(self, self.limiter.acquire)
            try:
                return await self.inner(request)
            finally:
                self.limiter.release(permit)

    await ServiceContract(Limit).check_all()


def test_an_unknown_check_is_refused_with_the_known_names() -> None:
    contract = ServiceContract(lambda inner, n: ConcurrencyLimit(inner, n))
    assert "a_call_alone_waits_for_capacity" in contract.checks()
    with pytest.raises(TypeError, match="make"):
        ServiceContract(42)  # type: ignore[arg-type]
