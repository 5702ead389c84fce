"""What does one agent step cost when the model's answer asks for 10 tools?

One conversation: the model asks for 10 tool calls at once, the tools run, the model answers.
The model is offline (it answers at once from a script) and the tool is
``async def lookup(item: int) -> str``, which returns at once, so every figure is the agent
loop's own cost: building requests, dispatching and validating the calls, running them
concurrently, collecting the results into the conversation.

- **gather loop**: the loop a user writes by hand: the model as an async function returning
  plain dicts (arguments already parsed, as the scripted models below give them),
  ``asyncio.gather`` over the 10 tool coroutines, the results appended as dicts (no argument
  validation): the baseline every ratio is taken against;
- **towerpy Agent**: ``Agent(model, tools=ToolRouter([lookup]))``, where ``model`` is a step
  service answering from two fixed messages (as the hand loop's model does), with the default
  ``tool_limit=5`` and with ``tool_limit=16`` (a batch smaller than the limit);
- **towerpy Agent (trio)**: the same on trio;
- **pydantic-ai**: ``Agent(FunctionModel(...), tools=[lookup]).run(...)``;
- **OpenAI Agents SDK**: ``Runner.run(Agent(model=<a scripted Model>, tools=[function_tool]))``,
  tracing off.

Each case runs ``--calls`` conversations per round; rounds alternate the cases, so drift on a
shared machine hits them all; the figure is the best round (µs per conversation) and, for the
ratio, the median over rounds of (case ÷ gather loop in the same round).

Run: ``python benchmarks/agent_step.py [--rounds 7] [--calls 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

from _percall import environment
from towerpy import Service
from towerpy.llm import Agent, ChatRequest, Message, StepOutcome, ToolCall
from towerpy.tools import ToolRouter, tool

TOOLS = 10
PROMPT = "look up ten items"

Case = Callable[[int], Awaitable[None]]


WAITS = False  # whether each tool call waits once (yields to the event loop) before answering


async def lookup_fn(item: int) -> str:
    if WAITS:
        await anyio.lowlevel.checkpoint()
    return f"item {item}"


# --- the hand-written loop ---------------------------------------------------------------------


async def fake_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    if messages[-1]["role"] == "tool":
        return {"role": "assistant", "content": "done"}
    calls = [{"id": f"call_{n}", "name": "lookup", "arguments": {"item": n}} for n in range(TOOLS)]
    return {"role": "assistant", "content": None, "tool_calls": calls}


HANDLERS = {"lookup": lookup_fn}


async def gather_loop(n: int) -> None:
    for _ in range(n):
        messages: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
        while True:
            answer = await fake_model(messages)
            messages.append(answer)
            calls = answer.get("tool_calls")
            if not calls:
                break
            results = await asyncio.gather(*(HANDLERS[c["name"]](**c["arguments"]) for c in calls))
            messages.extend(
                {"role": "tool", "tool_call_id": c["id"], "content": r}
                for c, r in zip(calls, results, strict=True)
            )
        assert messages[-1]["content"] == "done"


# --- towerpy -----------------------------------------------------------------------------------


@tool
async def lookup(item: int) -> str:
    """Looks an item up."""
    return await lookup_fn(item)


ROUTER = ToolRouter([lookup])
ASK = Message.assistant(
    tool_calls=[
        ToolCall(id=f"call_{n}", name="lookup", arguments={"item": n}) for n in range(TOOLS)
    ]
)
DONE = Message.assistant("done")


class Model(Service[ChatRequest, StepOutcome]):
    """The offline model: asks for the 10 tools, then answers once it has their results."""

    async def call(self, request: ChatRequest) -> StepOutcome:
        answer = DONE if request.messages[-1].role == "tool" else ASK
        return StepOutcome(
            messages=[*request.messages, answer],
            tool_calls=[call.to_invocation() for call in answer.tool_calls],
            done=not answer.tool_calls,
        )


def towerpy_case(tool_limit: int) -> Case:
    agent = Agent(Model(), tools=ROUTER, tool_limit=tool_limit)

    async def case(n: int) -> None:
        for _ in range(n):
            result = await agent.run(PROMPT)
            assert result.output == "done"

    return case


def on_trio(case: Case) -> Case:
    async def run(n: int) -> None:
        await asyncio.to_thread(anyio.run, case, n, backend="trio")  # type: ignore[arg-type]

    return run


# --- pydantic-ai -------------------------------------------------------------------------------


def pydantic_ai_case() -> Case | None:
    try:
        from pydantic_ai import Agent as PydanticAgent
        from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
        from pydantic_ai.models.function import FunctionModel
    except ImportError:
        return None

    def model(messages: list[Any], info: Any) -> ModelResponse:
        last = messages[-1]
        if any(isinstance(part, ToolReturnPart) for part in last.parts):
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(
            parts=[
                ToolCallPart("lookup", {"item": n}, tool_call_id=f"call_{n}") for n in range(TOOLS)
            ]
        )

    agent = PydanticAgent(FunctionModel(model))

    @agent.tool_plain
    async def lookup(item: int) -> str:
        """Looks an item up."""
        return await lookup_fn(item)

    async def case(n: int) -> None:
        for _ in range(n):
            result = await agent.run(PROMPT)
            assert result.output == "done"

    return case


# --- OpenAI Agents SDK -------------------------------------------------------------------------


def openai_agents_case() -> Case | None:
    try:
        from agents import Agent as SdkAgent
        from agents import Runner, function_tool, set_tracing_disabled
        from agents.items import ModelResponse
        from agents.models.interface import Model
        from agents.testing.model import assistant_message, function_call
        from agents.usage import Usage
    except ImportError:
        return None
    set_tracing_disabled(True)

    class Scripted(Model):
        async def get_response(
            self, system_instructions: Any, input: Any, *a: Any, **k: Any
        ) -> Any:
            answered = isinstance(input, list) and any(
                isinstance(item, dict) and item.get("type") == "function_call_output"
                for item in input
            )
            if answered:
                output = [assistant_message("done")]
            else:
                output = [
                    function_call("lookup", {"item": n}, call_id=f"call_{n}") for n in range(TOOLS)
                ]
            return ModelResponse(output=output, usage=Usage(), response_id=None)

        def stream_response(self, *a: Any, **k: Any) -> Any:  # pragma: no cover - unused
            raise NotImplementedError

    @function_tool
    async def lookup(item: int) -> str:
        """Looks an item up."""
        return await lookup_fn(item)

    agent = SdkAgent(name="bench", model=Scripted(), tools=[lookup])

    async def case(n: int) -> None:
        for _ in range(n):
            result = await Runner.run(agent, PROMPT)
            assert result.final_output == "done"

    return case


# --- runner ------------------------------------------------------------------------------------


async def time_round(case: Case, calls: int) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        await case(calls)
        return (time.perf_counter_ns() - start) / calls / 1000
    finally:
        gc.enable()


async def main(rounds: int, calls: int) -> None:
    global WAITS
    cases: dict[str, Case] = {
        "gather loop (by hand)": gather_loop,
        "towerpy Agent, tool_limit=5": towerpy_case(5),
        "towerpy Agent, tool_limit=16": towerpy_case(16),
        "towerpy Agent, tool_limit=5 (trio)": on_trio(towerpy_case(5)),
    }
    for name, make in (
        ("pydantic-ai", pydantic_ai_case),
        ("OpenAI Agents SDK", openai_agents_case),
    ):
        made = make()
        if made is not None:
            cases[name] = made
        else:
            print(f"({name} is not installed: skipped)")
    for waits in (False, True):
        WAITS = waits
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for case in cases.values():  # warm up
            await case(max(1, calls // 10))
        for _ in range(rounds):
            for name, case in cases.items():
                samples[name].append(await time_round(case, calls))
        base = samples["gather loop (by hand)"]
        kind = (
            "each tool waits once (anyio.lowlevel.checkpoint())"
            if waits
            else "tools answer at once"
        )
        print(f"\n{kind}\n")
        print("| case | µs per conversation (best round) | x gather loop (median, range) |")
        print("|---|---|---|")
        for name, values in samples.items():
            ratios = [v / b for v, b in zip(values, base, strict=True)]
            spread = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            print(f"| {name} | {min(values):.1f} | {spread} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300, help="conversations per round")
    args = parser.parse_args()
    print(environment("pydantic", "trio"))
    asyncio.run(main(args.rounds, args.calls))
