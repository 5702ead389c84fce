"""With instrument() on, the limits keep the ready()/call() contract (the waits are wrapped)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from towerpy import Buffer, ConcurrencyLimit, RateLimit
from towerpy.otel import TraceLayer
from towerpy.testing import ServiceContract

if TYPE_CHECKING:
    from .conftest import Telemetry

pytestmark = pytest.mark.anyio

LONG = 1e6

FACTORIES = {
    "ConcurrencyLimit": ServiceContract(lambda inner, n: ConcurrencyLimit(inner, n)),
    "RateLimit": ServiceContract(
        lambda inner, n: RateLimit(inner, n, per=LONG * n), capacity_returns=False
    ),
    "Buffer": ServiceContract(lambda inner, n: Buffer(inner, n)),
    "Traced(ConcurrencyLimit)": ServiceContract(
        lambda inner, n: TraceLayer("t").layer(ConcurrencyLimit(inner, n))
    ),
}
CASES = [
    pytest.param(name, check, id=f"{name}-{check}")
    for name, contract in FACTORIES.items()
    for check in contract.checks()
]


@pytest.mark.parametrize(("factory", "check"), CASES)
async def test_instrumented_limits_keep_the_contract(
    telemetry: Telemetry, factory: str, check: str
) -> None:
    await FACTORIES[factory].check(check)
