"""The demo's world: three scripted agents, their tools, and the limits they share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import anyio
from typing_extensions import override

from .._builder import ServiceBuilder
from .._service import Middleware, layer_fn
from ..errors import MaxStepsExceeded, ProviderError
from ..llm import (
    Agent,
    AgentResult,
    ChatRequest,
    Message,
    ParallelToolsLayer,
    ScriptedModel,
    ToolCall,
    is_retryable,
)
from ..retry import RetryPolicy
from ..tools import ToolInvocation, ToolRouter, tool
from .timeline import Recorded, Row, Timeline, mark_started

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from .._service import Service
    from ..llm import ScriptEntry, StepOutcome

__all__ = [
    "MODEL_RATE",
    "REAL_MODEL_STEPS",
    "REAL_MODEL_TIMEOUT",
    "TOOL_LIMITS",
    "TOOL_TIMEOUT",
    "AgentPlan",
    "build",
    "run_agents",
]

MODEL_RATE = (1.0, 2.0)  # model calls per second, burst: one budget shared by every agent
TOOL_LIMITS: dict[Hashable, int] = {"search": 2, "run_tests": 1}  # per tool, across every agent
TOOL_TIMEOUT = 2.0  # seconds a fetch may take
REAL_MODEL_TIMEOUT = 60.0  # seconds one call to a real model (--model) may take
REAL_MODEL_STEPS = 8  # a real model may take a few more turns than the script


async def _work(seconds: float) -> None:
    mark_started()
    await anyio.sleep(seconds)


@tool
async def search(query: str) -> list[str]:
    """Searches the web and returns the top result URLs."""
    await _work(0.8 + 0.1 * (len(query) % 5))
    slug = query.replace(" ", "-")
    return [f"https://example.org/{slug}/{n}" for n in range(1, 4)]


@tool(timeout=TOOL_TIMEOUT)
async def fetch(url: str) -> str:
    """Fetches a web page and returns its text."""
    await _work(6.0 if "slow" in url else 1.0)
    return f"(text of {url})"


@tool
async def read_file(path: str) -> str:
    """Reads a file of the repository."""
    await _work(0.4)
    return f"(contents of {path})"


@tool
async def run_tests(suite: str) -> dict[str, int]:
    """Runs a test suite and returns how many tests passed and failed."""
    await _work(1.5 if suite == "unit" else 2.0)
    return {"passed": 42 if suite == "unit" else 7, "failed": 0}


@tool
async def add(numbers: list[float]) -> float:
    """Adds numbers."""
    await _work(0.3)
    return sum(numbers)


def _calls(agent: str, step: int, *calls: tuple[str, dict[str, Any]]) -> Message:
    return Message.assistant(
        tool_calls=[
            ToolCall(id=f"{agent}-{step}{chr(97 + n)}", name=name, arguments=arguments)
            for n, (name, arguments) in enumerate(calls)
        ]
    )


def _recover(request: ChatRequest) -> Message:
    # the research agent reads its tool results: a timed-out fetch is retried from a mirror
    failed = [m for m in request.messages if m.role == "tool" and m.is_error]
    retry = [("fetch", {"url": "https://mirror.example.org/paper"})] if failed else []
    return _calls("research", 2, *retry, ("search", {"query": "tower rust"}))


def _final(summary: str) -> ScriptEntry:
    def answer(request: ChatRequest) -> Message:
        results = sum(1 for m in request.messages if m.role == "tool")
        errors = sum(1 for m in request.messages if m.role == "tool" and m.is_error)
        return Message.assistant(f"{summary} ({results} tool results, {errors} failed)")

    return answer


@final
class AgentPlan:
    """One scripted agent: its name, its tool limit, and what its model answers."""

    __slots__ = ("limit", "name", "prompt", "script")

    def __init__(self, name: str, limit: int, prompt: str, script: list[ScriptEntry]) -> None:
        self.name = name
        self.limit = limit
        self.prompt = prompt
        self.script = script


PLANS = [
    AgentPlan(
        "research",
        3,
        "What limits matter for LLM agents?",
        [
            _calls(
                "research",
                1,
                ("search", {"query": "rate limits"}),
                ("search", {"query": "token buckets"}),
                ("search", {"query": "llm agents"}),
                ("fetch", {"url": "https://slow.example.org/paper"}),
            ),
            _recover,
            _final("Rate limits, concurrency, timeouts."),
        ],
    ),
    AgentPlan(
        "coding",
        2,
        "Do the tests of the app pass?",
        [
            _calls(
                "coding",
                1,
                ("read_file", {"path": "src/app.py"}),
                ("read_file", {"path": "tests/test_app.py"}),
                ("search", {"query": "anyio"}),
            ),
            _calls("coding", 2, ("run_tests", {"suite": "unit"}), ("run_tests", {"suite": "e2e"})),
            _final("All 49 tests pass."),
        ],
    ),
    AgentPlan(
        "ops",
        2,
        "Is the service healthy?",
        [
            _calls(
                "ops",
                1,
                ("fetch", {"url": "https://status.example.org"}),
                ("search", {"query": "error budget"}),
                ("add", {"numbers": [99.2, 0.5, 0.2]}),
            ),
            _calls(
                "ops",
                2,
                ("read_file", {"path": "deploy.yaml"}),
                ("fetch", {"url": "https://metrics.example.org"}),
            ),
            _final("Healthy, 99.9% of budget left."),
        ],
    ),
]


@final
class _MarkStart(Middleware[Any, Any], direct_call=True):
    """Marks the model call as running once every limit outside it has let it through."""

    __slots__ = ()

    @override
    async def call(self, request: Any) -> Any:
        mark_started()
        return await self.inner(request)


def _model_latency(request: ChatRequest) -> float:
    answers = sum(1 for m in request.messages if m.role == "assistant")
    return 0.8 if answers == 0 else 0.5


def _last_answer(timeline: Timeline, agent: str) -> float | None:
    for row in reversed(timeline.rows):
        if row.agent == agent and row.kind == "model":
            return row.ended
    return None


def _detail(invocation: ToolInvocation) -> str:
    # a real model (--model) may send arguments that do not fit: the label must not fail
    arguments = invocation.arguments
    if invocation.name == "fetch":
        return str(arguments.get("url", "")).removeprefix("https://").split(".")[0]
    if invocation.name == "read_file":
        return str(arguments.get("path", "")).rsplit("/", 1)[-1]
    if invocation.name == "add":
        numbers = arguments.get("numbers")
        return f"{len(numbers) if isinstance(numbers, list) else 0} numbers"
    return str(next(iter(arguments.values()), ""))


def _tool_row(agent: str) -> Any:
    def make(invocation: ToolInvocation, asked: float) -> Row:
        label = f"{invocation.name} {_detail(invocation)}"
        return Row(agent, "tool", invocation.name, label, asked)

    return make


def _model_row(agent: str) -> Any:
    count = 0

    def make(request: ChatRequest, asked: float) -> Row:
        nonlocal count
        count += 1
        return Row(agent, "model", "model", f"model call {count}", asked)

    return make


def _tool_name(invocation: ToolInvocation) -> str:
    return invocation.name


def _asked(timeline: Timeline, agent: str) -> Callable[[], float | None]:
    # a tool call is asked for when its agent's model answered, whenever a limit lets it start
    return lambda: _last_answer(timeline, agent)


def _model_recorder(timeline: Timeline, agent: str) -> Callable[[Service[Any, Any]], Recorded]:
    return lambda inner: Recorded(inner, timeline, _model_row(agent))


def build(
    timeline: Timeline,
    model: Service[ChatRequest, StepOutcome] | None = None,
    *,
    tool_limit: int | None = None,
) -> list[tuple[AgentPlan, Agent]]:
    """Builds the agents: one shared rate limit, per-agent and per-tool limits, a tool timeout.

    Args:
        timeline: Where calls are recorded.
        model: A real model (``--model``) shared by every agent, instead of each agent's
            scripted one, with retries of what `is_retryable` allows, the key's quota learned
            from the provider's headers (one `ProviderQuotaLayer` for every agent: a 429 pauses
            them all), and a timeout on each call.
        tool_limit: The most tool calls of one answer run at once, for every agent, instead of
            each plan's own limit (``1`` runs them one at a time).
    """
    from .. import KeyedConcurrencyLimitLayer, RateLimitLayer, TokenBucket
    from ..llm import ProviderQuotaLayer

    rate, burst = MODEL_RATE
    bucket = TokenBucket(rate, per=1.0, burst=burst)  # one budget for every agent's model calls
    router = ToolRouter([search, fetch, read_file, run_tests, add])
    tools: Service[ToolInvocation, Any] = (
        ServiceBuilder()
        .layer(KeyedConcurrencyLimitLayer(key=_tool_name, limits=TOOL_LIMITS))
        .service(router)
    )
    quota = ProviderQuotaLayer()  # a real key's quota, learned from its answers' headers
    agents = []
    for plan in PLANS:
        name = plan.name
        agent_tools = Recorded(tools, timeline, _tool_row(name), asked=_asked(timeline, name))
        stack = (
            ServiceBuilder()
            .layer(ParallelToolsLayer(agent_tools, limit=tool_limit or plan.limit, catalog=router))
            .layer(layer_fn(_model_recorder(timeline, name)))
        )
        if model is not None:  # a real provider fails now and then; each retry pays the rate
            stack = stack.retry(RetryPolicy(3, retry_on=is_retryable)).layer(quota)
        stack = stack.layer(RateLimitLayer(limiter=bucket)).layer(layer_fn(_MarkStart))
        if model is None:
            step = stack.service(ScriptedModel(plan.script, latency=_model_latency))
        else:
            step = stack.timeout(REAL_MODEL_TIMEOUT).service(model)
        max_steps = 5 if model is None else REAL_MODEL_STEPS
        agents.append((plan, Agent(step, tools=agent_tools, max_steps=max_steps, catalog=router)))
    return agents


async def run_agents(
    agents: list[tuple[AgentPlan, Agent]], *, done: Callable[[], object] | None = None
) -> dict[str, AgentResult]:
    """Runs every agent at once; returns each one's result. ``done`` is called after each."""
    results: dict[str, AgentResult] = {}

    async def run(plan: AgentPlan, agent: Agent) -> None:
        try:
            results[plan.name] = await agent.run(plan.prompt)
        except (ProviderError, MaxStepsExceeded) as exc:
            # only a real model (--model) fails this way: show it as that agent's answer
            results[plan.name] = AgentResult(output=f"(failed: {exc})", steps=0)
        if done is not None:
            done()

    async with anyio.create_task_group() as tg:
        for plan, agent in agents:
            tg.start_soon(run, plan, agent)
    return results
