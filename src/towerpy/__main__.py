"""The command line: ``python -m towerpy demo``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]

_DEMO_HELP = """\
Runs three scripted agents at once, offline (no API key, no network). Each model answer
asks for several tools with different latencies; the tools run in parallel under:

  - one model rate limit shared by every agent (a TokenBucket),
  - a concurrency limit per agent (ParallelToolsLayer(limit=...)),
  - concurrency limits per tool, across agents (KeyedConcurrencyLimitLayer),
  - a timeout on fetch (@tool(timeout=...)): one fetch times out, the model reads the
    error and recovers.

It prints a timeline, one row per model call and tool call (bars where each ran, shading
where it waited for a limit), then a summary: calls, peak concurrency per limit, waits,
timeouts, and the wall time against the same calls made one at a time under the same limits
(each taking as long as it ran here, each model call waiting for the shared rate limit).

By default the demo runs in virtual time: every sleep is skipped, so it finishes at once and
prints the same timeline every time (on trio, calls that end at the same instant may be
woken in either order). --real-time runs it on the real clock (about 8 s).

--live draws, while the agents run, a view of every limit (requests in flight, waiting,
tokens), the runs done with a progress bar and an estimate of the time left, and what waited;
it runs on the real clock (it needs rich: pip install 'towerpy[rich]').

--model openai:MODEL or --model anthropic:MODEL runs the same agents, tools and limits against
a real model instead of the script, on the real clock (the key comes from OPENAI_API_KEY or
ANTHROPIC_API_KEY); --base-url sends it to an OpenAI-compatible server such as vLLM or Ollama.

--scene outage runs another scene: six agents call two model providers through a Balance,
each provider behind a circuit breaker and a timeout. One provider stops answering mid-run:
its breaker opens, the traffic goes to the other, probes find it down, then back; the same
traffic without breakers (round-robin) is run for comparison."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m towerpy",
        description="towerpy: composable, concurrency-correct middleware for LLM agents.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run several agents with parallel tools under shared limits, offline",
        description=_DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--scene",
        choices=("agents", "outage"),
        default="agents",
        help="agents: parallel tools under shared limits (default); outage: one of two "
        "providers goes down, circuit breakers and a balance route around it",
    )
    demo.add_argument(
        "--real-time",
        action="store_true",
        help="run on the real clock instead of virtual time (takes about 8 s)",
    )
    demo.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the anyio backend to run on (default: asyncio)",
    )
    demo.add_argument(
        "--ascii", action="store_true", help="draw the timeline with ASCII characters only"
    )
    demo.add_argument(
        "--live",
        action="store_true",
        help="draw a live view of the limits while the agents run (real time, needs rich)",
    )
    demo.add_argument(
        "--width", type=int, default=80, help="terminal width to draw for (default: 80)"
    )
    demo.add_argument(
        "--model",
        metavar="PROVIDER:MODEL",
        help="run the same scenario against a real model, openai:MODEL or anthropic:MODEL "
        "(needs OPENAI_API_KEY or ANTHROPIC_API_KEY, and towerpy[openai] or towerpy[anthropic]); "
        "runs on the real clock. Default: the scripted model, offline",
    )
    demo.add_argument(
        "--base-url",
        metavar="URL",
        help="the server to send --model to: an OpenAI-compatible one such as vLLM or Ollama "
        "(http://localhost:11434/v1), which needs no API key",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs the command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help()
        return 0 if args.command is None else 2
    if args.width < 60:
        parser.error("--width must be at least 60 columns")
    if args.backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            parser.error("--backend trio needs trio: pip install trio")
    if args.live:
        try:
            import rich  # noqa: F401
        except ImportError:
            parser.error("--live needs rich: pip install 'towerpy[rich]'")
    model = None
    if args.scene == "outage" and args.model is not None:
        parser.error("--model goes with the agents scene; the outage scene is scripted")
    if args.scene == "outage" and args.live:
        parser.error("--live goes with the agents scene; the outage scene draws its circuits")
    if args.base_url is not None and args.model is None:
        parser.error("--base-url goes with --model, e.g. --model openai:llama3.1")
    if args.model is not None:
        from .llm._select import MissingApiKey, model_from_spec

        try:
            model = model_from_spec(args.model, base_url=args.base_url)
        except ValueError as exc:
            parser.error(f"--model: {exc}")
        except (MissingApiKey, ImportError) as exc:
            print(f"python -m towerpy demo: {exc}", file=sys.stderr)
            return 2
    from ._demo import main as demo

    return demo(
        real_time=args.real_time or args.live,  # a live view is for watching: real time
        live=args.live,
        backend=args.backend,
        ascii_only=args.ascii,
        width=args.width,
        model=model,
        model_name=args.model,
        scene=args.scene,
    )


if __name__ == "__main__":
    sys.exit(main())
