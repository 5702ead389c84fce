"""Every service with capacity keeps the ready()/call() contract: one suite, every factory."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from typing_extensions import override

from towerpy import (
    Balance,
    Buffer,
    Circuit,
    CircuitBreaker,
    ConcurrencyLimit,
    Fallback,
    Hedge,
    KeyedConcurrencyLimit,
    LoadShed,
    Middleware,
    RateLimit,
    Service,
    Timeout,
    lowlevel,
    service_fn,
)
from towerpy.llm import AgentPool, ChatRequest, Message, ProviderQuota
from towerpy.testing import ServiceContract
from towerpy.tools import tool
from towerpy.workflow import Sequential

pytestmark = pytest.mark.anyio

LONG = 1e6  # a rate limit's period: no token comes back during a check


def _mock(inner: Any, capacity: int) -> Service[Any, Any]:
    inner.handle.allow(capacity)
    return inner  # type: ignore[no-any-return]


async def _same(request: Any) -> Any:
    return request


def _tool(inner: Service[Any, Any], capacity: int) -> Service[Any, Any]:
    @tool(concurrency_limit=capacity)
    async def relay(text: str) -> Any:
        """Relays the text to the inner service."""
        return await inner(text)

    return relay


def _half_open(inner: Service[Any, Any], capacity: int) -> Service[Any, Any]:
    # the probe permits of a half-open circuit are its capacity; a call beyond them is refused
    breaker = CircuitBreaker(1, recovery_time=0.0, half_open_calls=capacity)
    breaker.trip()  # open for 0 s: half-open at once
    return Circuit(inner, breaker)


async def _echo(request: Any) -> Any:
    return request


def _priority(request: Any) -> int:
    return len(repr(request)) % 3  # differs between requests: every line keeps its order


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
    "ConcurrencyLimit(priority=)": ServiceContract(
        lambda inner, n: ConcurrencyLimit(inner, n, priority=_priority)
    ),
    "RateLimit(priority=)": ServiceContract(
        lambda inner, n: RateLimit(inner, n, per=LONG * n, priority=_priority),
        capacity_returns=False,
    ),
    "Buffer(priority=)": ServiceContract(lambda inner, n: Buffer(inner, n, priority=_priority)),
    "LoadShed(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: LoadShed(ConcurrencyLimit(inner, n)), sheds=True
    ),
    "LoadShed(Buffer)": ServiceContract(lambda inner, n: LoadShed(Buffer(inner, n)), sheds=True),
    "Timeout(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: Timeout(ConcurrencyLimit(inner, n), LONG)
    ),
    "Tool(concurrency_limit=)": ServiceContract(_tool, request={"text": "request"}),
    "MockService": ServiceContract(_mock, capacity_returns=False),
    "Circuit(half-open)": ServiceContract(_half_open, sheds=True),
    "Circuit(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: Circuit(ConcurrencyLimit(inner, n), CircuitBreaker())
    ),
    "Balance(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: Balance([ConcurrencyLimit(inner, n)])
    ),
    "Balance(ConcurrencyLimit x n)": ServiceContract(
        lambda inner, n: Balance([ConcurrencyLimit(inner, 1) for _ in range(n)])
    ),
    "Balance(round_robin)": ServiceContract(
        lambda inner, n: Balance(
            [ConcurrencyLimit(inner, 1) for _ in range(n)], choose="round_robin"
        )
    ),
    "Hedge(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: Hedge(ConcurrencyLimit(inner, n), LONG)
    ),
    "Fallback(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: Fallback(ConcurrencyLimit(inner, n), service_fn(_echo))
    ),
    "Sequential(ConcurrencyLimit, ...)": ServiceContract(
        lambda inner, n: Sequential(ConcurrencyLimit(inner, n), service_fn(_same))
    ),
    "AgentPool[name] (max_concurrent=)": ServiceContract(
        lambda inner, n: AgentPool().add("agent", inner, max_concurrent=n)
    ),
    "AgentPool[name] (global limit)": ServiceContract(
        lambda inner, n: AgentPool(n, default_quota=n + 1).add("agent", inner)
    ),
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


class Hasty(Middleware[Any, Any], direct_call=True):
    """A broken limit: its try_ready() waits, as ready() does, where it should say False."""

    def __init__(self, inner: Service[Any, Any], capacity: int) -> None:
        super().__init__(inner)
        self.limiter = ConcurrencyLimit(inner, capacity).limiter

    @override
    async def ready(self) -> None:
        await lowlevel.reserve(self, self.limiter.acquire, self.limiter.release, self.inner)

    @override
    async def try_ready(self) -> bool:
        await self.ready()
        return True

    @override
    async def call(self, request: Any) -> Any:
        permit = await lowlevel.take_or_acquire(self, self.limiter.acquire)
        try:
            return await self.inner(request)
        finally:
            self.limiter.release(permit)


async def test_a_step_that_must_not_wait_fails_after_the_contracts_bound() -> None:
    contract = ServiceContract(Hasty, bound=2.5)
    start = anyio.current_time()
    with pytest.raises(TimeoutError):
        await contract.check("try_ready_does_not_wait_and_holds_nothing_when_it_fails")
    assert anyio.current_time() - start == pytest.approx(2.5)  # virtual seconds, not an hour


def test_an_unknown_check_is_refused_with_the_known_names() -> None:
    contract = ServiceContract(lambda inner, n: ConcurrencyLimit(inner, n))
    assert "a_call_alone_waits_for_capacity" in contract.checks()
    with pytest.raises(TypeError, match="make"):
        ServiceContract(42)  # type: ignore[arg-type]


def test_a_bound_or_settle_that_cannot_work_is_refused_saying_what_is_needed() -> None:
    def make(inner: Service[Any, Any], n: int) -> Service[Any, Any]:
        return ConcurrencyLimit(inner, n)

    with pytest.raises(ValueError, match="bound must be a finite number > 0"):
        ServiceContract(make, bound=0)
    with pytest.raises(TypeError, match=r"settle\(service\)"):
        ServiceContract(make, settle=5)  # type: ignore[arg-type]
