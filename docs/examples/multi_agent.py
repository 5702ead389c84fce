"""Two agents sharing one model rate limit, with parallel tools: offline, in a few seconds.

Run it: ``python docs/examples/multi_agent.py``. The models are scripted (`ScriptedModel`), so
no API key is needed; swap in ``OpenAIChatModel("gpt-4o-mini")`` or
``AnthropicModel("claude-sonnet-4-5")`` for real ones, and nothing else changes.
"""

from __future__ import annotations

import anyio

from towerpy import RateLimitLayer, ServiceBuilder, TokenBucket
from towerpy.llm import (
    Agent,
    AgentResult,
    ChatRequest,
    Message,
    ParallelToolsLayer,
    ScriptedModel,
    ToolCall,
)
from towerpy.tools import ToolRouter, tool


@tool(concurrency_limit=2, timeout=5.0)  # two lookups at once across agents; none over 5 s
async def lookup(city: str) -> dict[str, object]:
    """Looks up the weather in a city.

    Args:
        city: The city's name, e.g. "Oslo".
    """
    await anyio.sleep(0.3)  # a slow API
    return {"city": city, "celsius": len(city) * 3}


def ask_for(*cities: str) -> Message:
    """The model's first answer: one lookup per city, all in one response."""
    return Message.assistant(
        tool_calls=[
            ToolCall(id=f"call-{city}", name="lookup", arguments={"city": city}) for city in cities
        ]
    )


def report(request: ChatRequest) -> Message:
    """The model's final answer, written from the tool results it was sent."""
    results = [m.content for m in request.messages if m.role == "tool"]
    return Message.assistant(f"{len(results)} cities: " + "; ".join(map(str, results)))


async def main() -> dict[str, AgentResult]:
    router = ToolRouter([lookup])
    bucket = TokenBucket(2, per=1.0)  # 2 model calls per second, for both agents together

    def agent(*cities: str) -> Agent:
        step = (
            ServiceBuilder()
            .layer(ParallelToolsLayer(router, limit=3))  # the tools of one answer, in parallel
            .rate_limit(2, per=1.0)  # this agent's own budget …
            .layer(RateLimitLayer(limiter=bucket))  # … and the budget shared with the other
            .timeout(30.0)  # a model call that hangs is cut
            .service(ScriptedModel([ask_for(*cities), report], latency=0.2))
        )
        return Agent(step, tools=router, max_steps=4, system="Answer briefly.")

    agents = {"north": agent("Oslo", "Tromsø", "Bergen"), "south": agent("Lima", "Quito")}
    results: dict[str, AgentResult] = {}

    async def run(name: str, prompt: str) -> None:
        results[name] = await agents[name].run(prompt)

    async with anyio.create_task_group() as tg:
        for name in agents:
            tg.start_soon(run, name, f"Weather in the {name}?")
    return results


if __name__ == "__main__":
    for name, result in anyio.run(main).items():
        print(f"{name}: {result.output} ({result.steps} model calls)")
