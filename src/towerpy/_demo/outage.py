"""``python -m towerpy demo --scene outage``: one of two providers goes down mid-run.

Six agents send model calls to two providers, alpha and beta, through a `Balance`; each
provider has a circuit breaker and a timeout. From `OUTAGE` alpha stops answering (its calls
hang until the timeout). Its breaker opens after a few timeouts, the balance sends every call
to beta, the probes find alpha still down, and once alpha is back a probe closes its circuit
and the traffic spreads again. The same traffic is then replayed with round-robin and no
breaker, for comparison.
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

import anyio
from typing_extensions import override

from .._backend import current_time
from .._builder import ServiceBuilder
from .._service import Middleware, Service
from ..errors import ProviderError
from ..resilience import Balance, CircuitBreaker, CircuitBreakerStatistics
from ..retry import ExponentialBackoff, RetryPolicy
from .timeline import _axis

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AGENTS",
    "CALLS_PER_AGENT",
    "OUTAGE",
    "TIMEOUT",
    "Outcome",
    "render",
    "run_outage",
    "summary",
]

AGENTS = 6
CALLS_PER_AGENT = 20
OUTAGE = (4.0, 12.0)  # seconds: alpha hangs from the first to the second
TIMEOUT = 2.0  # seconds a model call may take
FAILURES_TO_OPEN = 3
RECOVERY = 3.0  # seconds a circuit stays open
_LABEL = 15
_SAMPLE = 0.05  # seconds between two looks at the circuits

_GLYPHS = {
    "ok": "█",
    "hang": "░",
    "timeout": "✕",
    "closed": "─",
    "open": "▒",
    "half_open": "◇",
    "spark": " ▁▂▃▄▅▆▇█",
    "failed": "!",
}
_ASCII = {
    "ok": "#",
    "hang": ".",
    "timeout": "X",
    "closed": "-",
    "open": "=",
    "half_open": "?",
    "spark": " .:-=+*#%",
    "failed": "!",
}


@dataclass
class Call:
    """One call that reached a provider."""

    provider: str
    started: float
    ended: float = 0.0
    status: str = "ok"  # "ok" or "timeout"


@dataclass
class Outcome:
    """What one run of the scene did."""

    calls: list[Call] = field(default_factory=list)
    answered: list[tuple[float, float]] = field(default_factory=list)  # (asked, answered)
    failed: list[float] = field(default_factory=list)
    states: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    circuits: dict[str, CircuitBreakerStatistics] = field(default_factory=dict)
    start: float = 0.0
    end: float = 0.0

    def on(self, provider: str) -> list[Call]:
        """The calls that reached ``provider``."""
        return [call for call in self.calls if call.provider == provider]


@final
class _Provider(Service[str, str]):
    """A model provider: answers in 0.4-0.8 s, or hangs while it is down."""

    def __init__(self, name: str, down: Callable[[float], bool], seed: int) -> None:
        self.name = name
        self._down = down
        self._random = random.Random(seed)

    @override
    async def call(self, request: str) -> str:
        latency = self._random.uniform(0.4, 0.8)
        if self._down(current_time()):
            await anyio.sleep_forever()
        await anyio.sleep(latency)
        return f"{self.name} answered {request}"


@final
class _Recorded(Middleware[str, str], direct_call=True):
    """Records each call that reaches the provider, and how it ended."""

    def __init__(self, inner: Service[str, str], name: str, outcome: Outcome) -> None:
        super().__init__(inner)
        self._name = name
        self._outcome = outcome

    @override
    async def call(self, request: str) -> str:
        call = Call(self._name, current_time())
        self._outcome.calls.append(call)
        try:
            return await self.inner(request)
        except BaseException:
            call.status = "timeout"  # the only way a call here ends early: Timeout cancels it
            raise
        finally:
            call.ended = current_time()


def _down_from(start: float) -> Callable[[float], bool]:
    return lambda now: OUTAGE[0] <= now - start < OUTAGE[1]


def build(
    outcome: Outcome, *, breakers: bool
) -> tuple[Service[str, str], dict[str, CircuitBreaker]]:
    """Builds the model service: a retry over a balance of two providers.

    Args:
        outcome: Where calls are recorded.
        breakers: A circuit breaker per provider and p2c (the scene), or neither and
            round-robin (the comparison).
    """
    start = current_time()
    circuits: dict[str, CircuitBreaker] = {}
    endpoints = []
    for seed, name in enumerate(("alpha", "beta")):
        down = _down_from(start) if name == "alpha" else (lambda now: False)
        stack = ServiceBuilder()
        if breakers:
            circuits[name] = CircuitBreaker(FAILURES_TO_OPEN, recovery_time=RECOVERY)
            stack = stack.circuit_breaker(breaker=circuits[name])
        recorded = _Recorded(_Provider(name, down, seed), name, outcome)
        endpoints.append(stack.timeout(TIMEOUT).service(recorded))
    balance = Balance(endpoints, choose="p2c" if breakers else "round_robin", rng=random.Random(7))
    policy = RetryPolicy(3, backoff=ExponentialBackoff(0.1, jitter=False))
    return ServiceBuilder().retry(policy).service(balance), circuits


async def run_outage(*, breakers: bool = True) -> Outcome:
    """Runs the agents' calls; returns what happened."""
    outcome = Outcome(start=current_time())
    model, circuits = build(outcome, breakers=breakers)
    for name in circuits:
        outcome.states[name] = []

    async def agent(number: int) -> None:
        await anyio.sleep(0.15 * number)  # the agents start one after another
        for step in range(CALLS_PER_AGENT):
            asked = current_time()
            try:
                await model(f"agent {number} step {step}")
            except (ProviderError, TimeoutError):
                outcome.failed.append(current_time())
            else:
                outcome.answered.append((asked, current_time()))
            await anyio.sleep(0.2)  # the agent reads the answer, runs a tool

    async def watch() -> None:
        while True:
            for name, breaker in circuits.items():
                outcome.states[name].append((current_time(), breaker.state))
            await anyio.sleep(_SAMPLE)

    async with anyio.create_task_group() as tg:
        if circuits:
            tg.start_soon(watch)
        async with anyio.create_task_group() as agents:
            for number in range(AGENTS):
                agents.start_soon(agent, number)
        tg.cancel_scope.cancel()
    outcome.end = current_time()
    outcome.circuits = {name: breaker.statistics() for name, breaker in circuits.items()}
    return outcome


def _state_at(states: list[tuple[float, str]], when: float) -> str:
    state = "closed"
    for sampled, seen in states:
        if sampled > when:
            break
        state = seen
    return state


def render(outcome: Outcome, *, width: int = 80, ascii_only: bool = False) -> str:
    """Draws the providers' calls, their circuits and the answers, time running left to right."""
    glyphs = _ASCII if ascii_only else _GLYPHS
    columns = max(20, width - _LABEL - 1)
    span = max(outcome.end - outcome.start, 1e-9)
    step = span / columns

    def column(t: float) -> int:
        return min(columns - 1, int((t - outcome.start) / step))

    lines = [" " * _LABEL + _axis(columns, step)]
    for name in ("alpha", "beta"):
        cells = [" "] * columns
        rank = {" ": 0, glyphs["ok"]: 1, glyphs["hang"]: 2, glyphs["timeout"]: 3}
        for call in outcome.on(name):
            glyph = glyphs["ok"] if call.status == "ok" else glyphs["hang"]
            for col in range(column(call.started), column(call.ended) + 1):
                if rank[glyph] > rank[cells[col]]:
                    cells[col] = glyph
            if call.status == "timeout":
                cells[column(call.ended)] = glyphs["timeout"]
        lines.append(f"{name + ' calls':<{_LABEL}}" + "".join(cells))
        if name in outcome.states:
            states = outcome.states[name]
            row = "".join(
                glyphs[_state_at(states, outcome.start + (col + 0.5) * step)]
                for col in range(columns)
            )
            lines.append(f"{'  circuit':<{_LABEL}}" + row)
    counts = [0] * columns
    for _, answered in outcome.answered:
        counts[column(answered)] += 1
    top = max(counts, default=0) or 1
    spark = glyphs["spark"]
    cells = [spark[round(n / top * (len(spark) - 1))] if n else " " for n in counts]
    for failed in outcome.failed:
        cells[column(failed)] = glyphs["failed"]
    lines.append(f"{'answers':<{_LABEL}}" + "".join(cells))
    legend = (
        f"  {glyphs['ok']} answered  {glyphs['hang']} hanging  {glyphs['timeout']} timed out"
        f"   circuit: {glyphs['closed']} closed  {glyphs['open']} open  "
        f"{glyphs['half_open']} half-open"
    )
    lines.append(legend)
    return "\n".join(line.rstrip() for line in lines)


def _opened_at(outcome: Outcome, name: str) -> list[tuple[float, str]]:
    """The changes of a circuit's state, in seconds from the start."""
    changes: list[tuple[float, str]] = []
    for sampled, state in outcome.states.get(name, []):
        if not changes or changes[-1][1] != state:
            changes.append((sampled - outcome.start, state))
    return changes


def _latency_p99(outcome: Outcome) -> float:
    latencies = sorted(answered - asked for asked, answered in outcome.answered)
    if not latencies:
        return 0.0
    return latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]


def summary(scene: Outcome, plain: Outcome, width: int = 80) -> str:
    """The numbers under the timeline, next to the same traffic without breakers."""
    down_from, down_to = OUTAGE
    hung = [c for c in scene.on("alpha") if c.status == "timeout"]
    plain_hung = [c for c in plain.on("alpha") if c.status == "timeout"]
    changes = _opened_at(scene, "alpha")
    recovered = changes[-1][0] if changes and changes[-1][1] == "closed" else down_to
    during = [c for c in scene.calls if down_from <= c.started - scene.start < recovered]
    to_beta = sum(1 for c in during if c.provider == "beta")
    # a non-breaking space keeps "9.8 s" on one line when the list is wrapped
    moves = ", ".join(f"{state.replace('_', '-')} {at:.1f}\u00a0s" for at, state in changes[1:])
    total = AGENTS * CALLS_PER_AGENT
    lines = [
        "Summary",
        f"  requests   {total} sent, {len(scene.answered)} answered, {len(scene.failed)} "
        f"failed (a failed call is retried)",
        f"  alpha      down from {down_from:g} s to {down_to:g} s; {len(hung)} calls hung "
        f"until the {TIMEOUT:g} s timeout",
        *(
            line.replace("\u00a0", " ")
            for line in textwrap.wrap(
                f"circuit: {moves}",
                width=width,
                initial_indent="  alpha      ",
                subsequent_indent=" " * 13,
            )
        ),
        f"  beta       took {to_beta} of the {len(during)} calls made while alpha was out",
        f"  wall time  {scene.end - scene.start:.1f} s; slowest answers (p99) "
        f"{_latency_p99(scene):.1f} s",
        "",
        "Without circuit breakers (round-robin, the same retries and timeout):",
        f"  requests   {total} sent, {len(plain.answered)} answered, {len(plain.failed)} "
        f"failed; {len(plain_hung)} calls hung on alpha",
        f"  wall time  {plain.end - plain.start:.1f} s; slowest answers (p99) "
        f"{_latency_p99(plain):.1f} s",
    ]
    return "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in lines)


async def scene(width: int, ascii_only: bool) -> tuple[str, str]:
    """Runs the scene and its comparison; returns the timeline and the summary."""
    with_breakers = await run_outage(breakers=True)
    without = await run_outage(breakers=False)
    return render(with_breakers, width=width, ascii_only=ascii_only), summary(
        with_breakers, without, width
    )
