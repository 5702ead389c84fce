"""Surviving a provider's bad day: circuit breaker, fallback, hedging and load balancing."""

from .balance import Balance, BalanceStatistics, EndpointStatistics
from .breaker import CircuitBreaker, CircuitBreakerStatistics, CircuitState
from .circuit_breaker import Circuit, CircuitBreakerLayer
from .fallback import Fallback, FallbackLayer, FallbackStatistics
from .hedge import Hedge, HedgeLayer, HedgeStatistics

__all__ = [
    "Balance",
    "BalanceStatistics",
    "Circuit",
    "CircuitBreaker",
    "CircuitBreakerLayer",
    "CircuitBreakerStatistics",
    "CircuitState",
    "EndpointStatistics",
    "Fallback",
    "FallbackLayer",
    "FallbackStatistics",
    "Hedge",
    "HedgeLayer",
    "HedgeStatistics",
]
