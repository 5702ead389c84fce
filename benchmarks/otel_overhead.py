"""What do towerpy.otel's hooks cost, off (against the code before them) and on (a bare span)?

Off: the four-layer stack of limits_overhead.py (load shed + concurrency limit + rate limit +
timeout) per call, sequential and 100 tasks, and 100 tasks sharing 10 permits (every call
waits: the slow path where the wait hook is checked), measured by this checkout and by another
one (``--against``, e.g. main before the hooks) in interleaved subprocess rounds. Not
instrumented, the hook sites are a module attribute read behind ``is None``: the figures must
not differ beyond noise.

On: ``towerpy.otel.instrument()`` with the OpenTelemetry SDK's TracerProvider (no span
processor: what is measured is making spans, not exporting them). The same stack; the stack
under a ``TraceLayer`` (a span per call) next to the stack called inside a bare
``tracer.start_as_current_span``; a ``ToolRouter`` call (an ``execute_tool`` span with its five
GenAI attributes) next to the same call inside a bare span with the same attributes; and the
contended row, where each wait becomes an event and a histogram point.

Usage: python benchmarks/otel_overhead.py [--rounds 7] [--calls 20000] [--against ../main/src]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from towerpy import ConcurrencyLimit, Service, ServiceBuilder

LIMIT = 1000  # never reached: nothing waits
CONTENDED = 10
TASKS = 100
HUGE_RATE = 1e12
LONG = 3600.0

Call = Callable[[Any], Awaitable[Any]]


class Bare(Service[int, int]):
    async def call(self, request: int) -> int:
        return request


class Yield(Service[int, int]):
    async def call(self, request: int) -> int:
        await asyncio.sleep(0)
        return request


def stack4(inner: Service[int, int]) -> Service[int, int]:
    return (
        ServiceBuilder()
        .load_shed()
        .concurrency_limit(LIMIT)
        .rate_limit(HUGE_RATE)
        .timeout(LONG)
        .service(inner)
    )


async def sequential(call: Call, n: int, request: Any = 1) -> float:
    for _ in range(200):
        await call(request)
    start = time.perf_counter_ns()
    for _ in range(n):
        await call(request)
    return (time.perf_counter_ns() - start) / n


async def concurrent(call: Call, n: int, request: Any = 1) -> float:
    per_task = max(1, n // TASKS)

    async def worker() -> None:
        for _ in range(per_task):
            await call(request)

    start = time.perf_counter_ns()
    async with asyncio.TaskGroup() as group:
        for _ in range(TASKS):
            group.create_task(worker())
    return (time.perf_counter_ns() - start) / (per_task * TASKS)


async def off_rows(calls: int) -> dict[str, float]:
    """The rows whose code the hooks touch, not instrumented: one round."""
    import gc

    rows: dict[str, Callable[[], Awaitable[float]]] = {
        "stack (4), sequential": lambda: sequential(stack4(Bare()), calls),
        "stack (4), 100 tasks": lambda: concurrent(stack4(Yield()), calls),
        "contended ConcurrencyLimit(10), 100 tasks": lambda: concurrent(
            ConcurrencyLimit(Yield(), CONTENDED), calls
        ),
    }
    out = {}
    for name, run in rows.items():
        gc.collect()
        gc.disable()
        try:
            out[name] = await run()
        finally:
            gc.enable()
    return out


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def compare_off(rounds: int, calls: int, against: str) -> None:
    """This checkout against another, interleaved, each round in a fresh interpreter."""
    here = str(Path(__file__).resolve().parent.parent / "src")
    results: dict[str, dict[str, list[float]]] = {"this checkout": {}, "--against": {}}
    for _ in range(rounds):
        for label, src in (("this checkout", here), ("--against", against)):
            env = {**os.environ, "PYTHONPATH": src}
            done = subprocess.run(
                [sys.executable, __file__, "--off-round", "--calls", str(calls)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            for name, value in json.loads(done.stdout).items():
                results[label].setdefault(name, []).append(value)
    print(f"\n### Not instrumented: this checkout against {against}\n")
    print("| scenario | this checkout ns/call [min-max] | --against ns/call [min-max] | ratio |")
    print("|---|---|---|---|")
    for name, mine in results["this checkout"].items():
        theirs = results["--against"][name]
        ratio = statistics.median(mine) / statistics.median(theirs)
        print(f"| {name} | {fmt(mine)} | {fmt(theirs)} | {ratio:.3f} |")


async def on_rows(rounds: int, calls: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from towerpy import otel
    from towerpy.tools import ToolInvocation, ToolRouter, tool

    provider = TracerProvider()  # no processor: making spans is what is measured
    tracer = provider.get_tracer("bench")

    @tool
    async def echo(text: str) -> str:
        """Echoes."""
        return text

    router = ToolRouter([echo])
    invocation = ToolInvocation(id="1", name="echo", arguments={"text": "hi"})

    def in_bare_span(service: Call, attributes: dict[str, Any] | None = None) -> Call:
        async def call(request: Any) -> Any:
            with tracer.start_as_current_span("call", attributes=attributes):
                return await service(request)

        return call

    # what the execute_tool span carries: the same, by hand
    tool_attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "echo",
        "gen_ai.tool.call.id": "1",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Echoes.",
    }

    plain = stack4(Bare())
    traced = ServiceBuilder().layer(otel.TraceLayer("call")).service(stack4(Bare()))
    rows: list[tuple[str, bool, Callable[[], Awaitable[float]]]] = [
        ("stack (4)", False, lambda: sequential(plain, calls)),
        ("stack (4)", True, lambda: sequential(plain, calls)),
        (
            "bare start_as_current_span + stack (4)",
            False,
            lambda: sequential(in_bare_span(plain), calls),
        ),
        ("TraceLayer + stack (4)", True, lambda: sequential(traced, calls)),
        ("ToolRouter.call", False, lambda: sequential(router.call, calls, invocation)),
        (
            "ToolRouter.call (execute_tool span)",
            True,
            lambda: sequential(router.call, calls, invocation),
        ),
        (
            "bare start_as_current_span (same attributes) + ToolRouter.call",
            False,
            lambda: sequential(in_bare_span(router.call, tool_attributes), calls, invocation),
        ),
        (
            "contended ConcurrencyLimit(10), 100 tasks",
            False,
            lambda: concurrent(ConcurrencyLimit(Yield(), CONTENDED), calls),
        ),
        (
            "contended ConcurrencyLimit(10), 100 tasks (wait events)",
            True,
            lambda: concurrent(ConcurrencyLimit(Yield(), CONTENDED), calls),
        ),
    ]
    figures: dict[tuple[str, bool], list[float]] = {}
    import gc

    for _ in range(rounds):
        for name, on, run in rows:
            if on:
                otel.instrument(tracer_provider=provider)
            gc.collect()
            gc.disable()
            try:
                with tracer.start_as_current_span("benchmark round"):  # waits land on a span
                    figures.setdefault((name, on), []).append(await run())
            finally:
                gc.enable()
                otel.uninstrument()
    base = statistics.median(figures[("stack (4)", False)])
    print("\n### Instrumented (SDK TracerProvider, no processor), sequential unless said\n")
    print("| scenario | instrumented | ns/call [min-max] | added to the stack (4) alone |")
    print("|---|---|---|---|")
    for (name, on), values in figures.items():
        added = statistics.median(values) - base if "stack (4)" in name else None
        cell = f"{added:,.0f}" if added is not None else "-"
        print(f"| {name} | {'on' if on else 'off'} | {fmt(values)} | {cell} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--against", help="another checkout's src/ to compare the off rows with")
    parser.add_argument("--off-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.off_round:
        print(json.dumps(asyncio.run(off_rows(args.calls))))
        return
    print(
        f"Python {platform.python_version()} on {platform.machine()} ({platform.system()}), "
        f"anyio {version('anyio')}, opentelemetry-sdk {version('opentelemetry-sdk')}; "
        f"{args.rounds} rounds of {args.calls} calls; figures: median [min-max] ns per call"
    )
    if args.against:
        compare_off(args.rounds, args.calls, args.against)
    asyncio.run(on_rows(args.rounds, args.calls))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
