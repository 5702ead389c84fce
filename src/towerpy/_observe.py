"""Hook slots through which towerpy reports what its limits do: None until someone listens.

Every slot below is None by default, and the code that calls one does so only behind an
``if _observe.slot is not None`` check, at a place where the cost of the check is nothing next
to what happens there anyway: a wait that actually happens (the task suspends), a retry, a
timeout, a shed, and the three span points (an agent run, a model step, a tool call). A
request that passes every limit at once never reaches a slot, so towerpy costs the same
whether anyone listens or not. `towerpy.otel.instrument` and `towerpy.monitor` install an
`Observer` with `install`; every slot that some installed observer overrides is then filled.

The slots, and where they are called (one or two lines each, at an obvious place):

- ``wait(layer, awaitable, reason=None)``: wraps the await of a wait; the observers hear of it
  only if the awaitable actually suspended, with its duration on the loop's clock, and the
  reason (by default the layer's entry in `REASONS`). Called by ``ConcurrencyLimiter.acquire``
  (``"concurrency_limit"``: a permit), ``TokenBucket.acquire`` (``"rate_limit"``: tokens) and
  ``Buffer.call`` (``"buffer"``: a buffered request waits for its worker on every call). The
  provider quota layer reports its waits as ``wait("provider_quota", ...)`` and its pause
  after a 429 as ``wait("provider_quota", ..., "pause")``.
- ``retry(error, attempt, delay)``: returns the awaitable of the backoff before the next try
  (a ``wait("retry", "backoff", ...)``); called by `Retry` in place of ``anyio.sleep(delay)``.
- ``give_up(error, attempt)``: `Retry` is about to raise ``error`` after ``attempt`` tries.
- ``timeout(error)``: an `Elapsed` was made (a `Timeout`, a tool's ``tool_timeout`` or
  ``wait_timeout``): called from ``Elapsed.__init__``.
- ``shed(layer)``: a request was refused instead of waiting (`LoadShed`: ``"load_shed"``).
- ``circuit_open(layer, retry_after)``: a circuit breaker opened (for the circuit breaker
  layer: ``circuit_open("circuit_breaker", seconds until half-open)``).
- ``agent_run(agent, prompt)``: runs ``agent.run(prompt)`` inside the observers' span point;
  called at the top of `Agent.run` when ``entering(prompt)`` (not when it is that call).
- ``model_step(agent)``: returns the function to send the agent's next `ChatRequest` to, in
  place of ``agent.step``.
- ``agent_span(agent, messages, awaitable)`` and ``model_span(agent, request, awaitable)``:
  the same span points, around an awaitable: `Agent.run_stream` awaits its run and each
  streamed model call through them.
- ``tool_call(router, invocation)``: runs ``router.call(invocation)`` inside the observers'
  span point; called at the top of `ToolRouter.call` when ``entering(invocation)``.

Observers' methods must not raise: they run in ``finally`` blocks and on error paths.

`name` is no hook: `AgentPool.add` records each agent's name with it, always, for the spans.
"""

from __future__ import annotations

import contextlib
import types
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._chain import iter_chain

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

# What the agent and tool hooks are given and return: towerpy.llm's and towerpy.tools' types,
# which sit above this module (they import it), so they are named here without being imported.
Agent = Any  # towerpy.llm.Agent
AgentResult = Any  # towerpy.llm.AgentResult
ChatRequest = Any  # towerpy.llm.ChatRequest
StepOutcome = Any  # towerpy.llm.StepOutcome
ToolInvocation = Any  # towerpy.tools.ToolInvocation
ToolOutput = Any  # towerpy.tools.ToolOutput
ToolRouter = Any  # towerpy.tools.ToolRouter

__all__ = [
    "REASONS",
    "Observer",
    "agent_run",
    "agent_span",
    "circuit_open",
    "entering",
    "give_up",
    "inside",
    "install",
    "installed",
    "model_span",
    "model_step",
    "name",
    "names",
    "retry",
    "shed",
    "timeout",
    "tool_call",
    "uninstall",
    "wait",
]

T = TypeVar("T")

REASONS = {
    "concurrency_limit": "permit",
    "rate_limit": "tokens",
    "buffer": "queue",
    "retry": "backoff",
    "provider_quota": "tokens",
}
"""What a wait in each layer waits for, unless its call says otherwise."""


class Observer:
    """Hears what towerpy's limits do; override the methods you need (the rest cost nothing).

    The span points (`agent_run`, `model_step`, `tool_call`) wrap the work: they must await
    ``proceed()`` exactly once and return what it returns (or let its exception through).
    """

    def wait_began(self, layer: str, reason: str) -> None:
        """A task started waiting in ``layer`` (it suspended)."""

    def wait_ended(self, layer: str, reason: str, seconds: float) -> None:
        """The wait ended (capacity granted, or the task cancelled), after ``seconds``."""

    def retrying(self, error: BaseException, attempt: int, delay: float) -> None:
        """Try ``attempt`` failed with ``error``; the next one follows in ``delay`` seconds."""

    def gave_up(self, error: BaseException, attempt: int) -> None:
        """`Retry` raises ``error``: ``attempt`` tries were made, the policy gave up."""

    def timed_out(self, error: BaseException) -> None:
        """A time limit passed: ``error`` is the `Elapsed` about to be raised."""

    def shed(self, layer: str) -> None:
        """A request was refused at once instead of waiting."""

    def circuit_opened(self, layer: str, retry_after: float) -> None:
        """A circuit breaker opened; it lets a probe through in ``retry_after`` seconds."""

    async def agent_run(self, agent: Any, prompt: Any, proceed: Callable[[], Awaitable[T]]) -> T:
        """Wraps one `Agent.run`."""
        return await proceed()

    async def model_step(self, agent: Any, request: Any, proceed: Callable[[], Awaitable[T]]) -> T:
        """Wraps one model call of an agent."""
        return await proceed()

    async def tool_call(
        self, router: Any, invocation: Any, proceed: Callable[[], Awaitable[T]]
    ) -> T:
        """Wraps one `ToolRouter.call`."""
        return await proceed()


# --- the slots (module attributes: read them as ``_observe.wait``, never import the name) ---

wait: Callable[..., Awaitable[Any]] | None = None  # (layer, awaitable, reason=None)
retry: Callable[[BaseException, int, float], Awaitable[None]] | None = None
give_up: Callable[[BaseException, int], None] | None = None
timeout: Callable[[BaseException], None] | None = None
shed: Callable[[str], None] | None = None
circuit_open: Callable[[str, float], None] | None = None
agent_run: Callable[[Agent, Any], Awaitable[AgentResult]] | None = None
model_step: Callable[[Agent], Callable[[ChatRequest], Awaitable[StepOutcome]]] | None = None
tool_call: Callable[[ToolRouter, ToolInvocation], Awaitable[ToolOutput]] | None = None
agent_span: Callable[[Agent, Any, Awaitable[Any]], Awaitable[Any]] | None = None
model_span: Callable[[Agent, ChatRequest, Awaitable[Any]], Awaitable[Any]] | None = None

# the names agents were given (by AgentPool.add): what their spans are called
names: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def name(service: object, label: str) -> None:
    """Records ``label`` as the name of ``service`` and of the services down its ``inner`` chain.

    So an agent added to a pool under layers of its own is found by its `Agent.run`. Objects
    that cannot be weakly referenced are skipped.
    """
    for node in iter_chain(service):
        with contextlib.suppress(TypeError):  # not weakly referenceable: no name kept
            names[node] = label


# the request a span point is about to run inside its span: the call that finds it here is
# that one (see `entering`)
inside: ContextVar[object] = ContextVar("towerpy_observed", default=None)


def entering(marker: object) -> bool:
    """Whether a span point's call is a new one (True), not the one its span is running.

    A span point runs the very call that reached it again, inside the span, with ``marker``
    (the request) in `inside`; that call finds it there at once and runs its plain body. The
    marker is used up then, so a call made further in with the same request object (a tool
    asking another agent the question it was given) is a new one, with a span of its own.
    """
    if inside.get() is marker:
        inside.set(None)
        return False
    return True


_observers: list[Observer] = []


def installed() -> tuple[Observer, ...]:
    """The observers installed, in order."""
    return tuple(_observers)


def install(observer: Observer) -> None:
    """Adds ``observer`` (once) and fills the slots it needs."""
    if observer not in _observers:
        _observers.append(observer)
    _fill()


def uninstall(observer: Observer) -> None:
    """Removes ``observer``; slots no installed observer needs go back to None."""
    if observer in _observers:
        _observers.remove(observer)
    _fill()


def _overriding(name: str) -> tuple[Observer, ...]:
    base = getattr(Observer, name)
    return tuple(o for o in _observers if getattr(type(o), name, base) is not base)


def _fill() -> None:
    global wait, retry, give_up, timeout, shed, circuit_open
    global agent_run, model_step, tool_call, agent_span, model_span
    began, ended = _overriding("wait_began"), _overriding("wait_ended")
    waits = tuple(o for o in _observers if o in began or o in ended)
    retries = _overriding("retrying")
    wait = _waiter(waits) if waits else None
    retry = _retrier(retries, waits) if retries or waits else None
    give_up = _caller("gave_up")
    timeout = _caller("timed_out")
    shed = _caller("shed")
    circuit_open = _caller("circuit_opened")
    runs, steps, tools = (_overriding(n) for n in ("agent_run", "model_step", "tool_call"))
    agent_run = _agent_runner(runs) if runs else None
    model_step = _stepper(steps) if steps else None
    tool_call = _tool_runner(tools) if tools else None
    agent_span = _spanner(runs, "agent_run") if runs else None
    model_span = _spanner(steps, "model_step") if steps else None


def _caller(name: str) -> Any:
    methods = [getattr(o, name) for o in _overriding(name)]
    if not methods:
        return None
    if len(methods) == 1:
        return methods[0]

    def call_all(*args: Any) -> None:
        for method in methods:
            method(*args)

    return call_all


# --- waits ----------------------------------------------------------------------------------


def _waiter(observers: tuple[Observer, ...]) -> Callable[..., Awaitable[Any]]:
    def timed(layer: str, awaitable: Awaitable[T], reason: str | None = None) -> Awaitable[T]:
        return _timed(observers, layer, reason or REASONS.get(layer, "capacity"), awaitable)

    return timed


@types.coroutine
def _timed(
    observers: tuple[Observer, ...], layer: str, reason: str, awaitable: Awaitable[T]
) -> Generator[Any, Any, T]:
    """Awaits ``awaitable``; if it suspends, reports the wait and how long it took."""
    steps = awaitable.__await__()
    started = anyio.current_time()
    try:
        signal = steps.send(None)
    except StopIteration as done:  # it did not wait: there is nothing to report
        result: T = done.value
        return result
    for observer in observers:
        observer.wait_began(layer, reason)
    closing = False
    try:
        while True:  # `yield from`, once the first step was taken
            try:
                sent = yield signal
            except GeneratorExit:
                closing = True  # closed unfinished (collected): no clock to read
                steps.close()
                raise
            except BaseException as exc:
                try:
                    signal = steps.throw(exc)
                except StopIteration as done:
                    result = done.value
                    return result
            else:
                try:
                    signal = steps.send(sent)
                except StopIteration as done:
                    result = done.value
                    return result
    finally:
        if not closing:
            seconds = anyio.current_time() - started
            for observer in observers:
                observer.wait_ended(layer, reason, seconds)


def _retrier(
    retries: tuple[Observer, ...], waits: tuple[Observer, ...]
) -> Callable[[BaseException, int, float], Awaitable[None]]:
    def backoff(error: BaseException, attempt: int, delay: float) -> Awaitable[None]:
        for observer in retries:
            observer.retrying(error, attempt, delay)
        pause = anyio.sleep(delay)
        return _timed(waits, "retry", "backoff", pause) if waits else pause

    return backoff


# --- span points ----------------------------------------------------------------------------


async def _through(
    observers: tuple[Observer, ...],
    method: str,
    args: tuple[Any, ...],
    innermost: Callable[[], Awaitable[T]],
) -> T:
    """Runs ``innermost`` inside each observer's span point, the first outermost."""
    if not observers:
        return await innermost()
    first, rest = observers[0], observers[1:]
    proceed: Callable[[], Awaitable[T]] = (
        innermost if not rest else lambda: _through(rest, method, args, innermost)
    )
    result: T = await getattr(first, method)(*args, proceed)
    return result


async def _reenter(marker: object, run: Callable[[], Awaitable[T]]) -> T:
    token = inside.set(marker)
    try:
        return await run()
    finally:
        inside.reset(token)


def _agent_runner(observers: tuple[Observer, ...]) -> Any:
    async def agent_run(agent: Any, prompt: Any) -> Any:
        return await _through(
            observers,
            "agent_run",
            (agent, prompt),
            lambda: _reenter(prompt, lambda: agent.run(prompt)),
        )

    return agent_run


def _stepper(observers: tuple[Observer, ...]) -> Any:
    def model_step(agent: Any) -> Callable[[Any], Awaitable[Any]]:
        async def step(request: Any) -> Any:
            return await _through(
                observers, "model_step", (agent, request), lambda: agent.step(request)
            )

        return step

    return model_step


def _spanner(observers: tuple[Observer, ...], method: str) -> Any:
    async def span(agent: Any, request: Any, awaitable: Awaitable[T]) -> T:
        return await _through(observers, method, (agent, request), lambda: awaitable)

    return span


def _tool_runner(observers: tuple[Observer, ...]) -> Any:
    async def tool_call(router: Any, invocation: Any) -> Any:
        return await _through(
            observers,
            "tool_call",
            (router, invocation),
            lambda: _reenter(invocation, lambda: router.call(invocation)),
        )

    return tool_call
