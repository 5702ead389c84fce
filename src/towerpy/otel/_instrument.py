"""`instrument` and `uninstrument`: the observer that turns towerpy's hooks into telemetry."""

from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
from opentelemetry import context, metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _observe
from ..errors import Elapsed, WaitElapsed
from ..tools._batch import current_clock
from . import _names as n
from ._describe import agent_name, describe_step, tool_description

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from opentelemetry.util.types import Attributes

__all__ = ["instrument", "instrumented", "tracer", "uninstrument"]

T = TypeVar("T")

try:
    _VERSION = version("towerpy")
except PackageNotFoundError:  # pragma: no cover - running from a checkout without metadata
    _VERSION = ""

_SCOPE = "towerpy"


@final
class _Telemetry(_observe.Observer):
    """Spans, span events and metrics for what towerpy's hooks report."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self.tracer = tracer
        self.wait_duration = meter.create_histogram(
            "towerpy.wait.duration",
            unit="s",
            description="Time a request waited in a towerpy limit before it could go on.",
            explicit_bucket_boundaries_advisory=n.WAIT_BUCKETS,
        )
        self.queued = meter.create_up_down_counter(
            "towerpy.queued", unit="{request}", description="Requests waiting in a towerpy limit."
        )
        self.in_flight = meter.create_up_down_counter(
            "towerpy.in_flight",
            unit="{call}",
            description="Agent runs, model calls and tool calls in progress.",
        )
        self.retries = meter.create_counter(
            "towerpy.retries", unit="{retry}", description="Calls tried again by a RetryLayer."
        )
        self.timeouts = meter.create_counter(
            "towerpy.timeouts", unit="{timeout}", description="Time limits that passed."
        )
        self.sheds = meter.create_counter(
            "towerpy.sheds", unit="{request}", description="Requests refused instead of waiting."
        )
        self.circuit_opens = meter.create_counter(
            "towerpy.circuit.opens", unit="{open}", description="Times a circuit breaker opened."
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=n.TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )

    # --- waits and events -------------------------------------------------------------------

    def wait_began(self, layer: str, reason: str) -> None:
        self.queued.add(1, {n.LAYER: layer})

    def wait_ended(self, layer: str, reason: str, seconds: float) -> None:
        self.queued.add(-1, {n.LAYER: layer})
        self.wait_duration.record(seconds, {n.LAYER: layer, n.WAIT_REASON: reason})
        span = trace.get_current_span()
        if span.is_recording():
            attributes: Attributes = {
                n.LAYER: layer,
                n.WAIT_REASON: reason,
                n.WAIT_SECONDS: seconds,
            }
            span.add_event(n.WAIT_EVENT, attributes)

    def retrying(self, error: BaseException, attempt: int, delay: float) -> None:
        kind = n.error_type(error)
        self.retries.add(1, {n.ERROR_TYPE: kind})
        span = trace.get_current_span()
        if span.is_recording():
            attributes: Attributes = {
                n.ERROR_TYPE: kind,
                n.RETRY_ATTEMPT: attempt,
                n.RETRY_DELAY: delay,
            }
            span.add_event(n.RETRY_EVENT, attributes)

    def gave_up(self, error: BaseException, attempt: int) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            attributes: Attributes = {n.ERROR_TYPE: n.error_type(error), n.RETRY_ATTEMPT: attempt}
            span.add_event(n.GIVE_UP_EVENT, attributes)

    def timed_out(self, error: BaseException) -> None:
        self.timeouts.add(1, {n.ERROR_TYPE: n.error_type(error)})

    def shed(self, layer: str) -> None:
        self.sheds.add(1, {n.LAYER: layer})
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(n.SHED_EVENT, {n.LAYER: layer})

    def circuit_opened(self, layer: str, retry_after: float) -> None:
        self.circuit_opens.add(1, {n.LAYER: layer})
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(n.CIRCUIT_OPEN_EVENT, {n.LAYER: layer, n.RETRY_DELAY: retry_after})

    # --- span points ------------------------------------------------------------------------

    async def agent_run(self, agent: Any, prompt: Any, proceed: Callable[[], Awaitable[T]]) -> T:
        name = agent_name(agent)
        model, provider = describe_step(getattr(agent, "step", None))
        attributes: dict[str, Any] = {n.OPERATION: "invoke_agent", n.PROVIDER: provider}
        if name is not None:
            attributes[n.AGENT_NAME] = name
        if model is not None:
            attributes[n.REQUEST_MODEL] = model
        title = "invoke_agent" if name is None else f"invoke_agent {name}"
        span = self.tracer.start_span(title, kind=SpanKind.INTERNAL, attributes=attributes)
        result = await self._run(span, "invoke_agent", proceed)
        return result

    async def model_step(self, agent: Any, request: Any, proceed: Callable[[], Awaitable[T]]) -> T:
        found, provider = describe_step(getattr(agent, "step", None))
        model = getattr(request, "model", None) or found
        attributes: dict[str, Any] = {n.OPERATION: "chat", n.PROVIDER: provider}
        if model is not None:
            attributes[n.REQUEST_MODEL] = model
        title = "chat" if model is None else f"chat {model}"
        span = self.tracer.start_span(title, kind=SpanKind.CLIENT, attributes=attributes)
        started = anyio.current_time()
        metric = dict(attributes)
        try:
            outcome = await self._run(span, "chat", proceed)
        except BaseException as exc:
            if isinstance(exc, Exception):
                metric[n.ERROR_TYPE] = n.error_type(exc)
            self.operation_duration.record(anyio.current_time() - started, metric)
            raise
        self.operation_duration.record(anyio.current_time() - started, metric)
        usage = getattr(outcome, "usage", None)
        if usage is not None:
            self.token_usage.record(usage.input_tokens, {**metric, n.TOKEN_TYPE: "input"})
            self.token_usage.record(usage.output_tokens, {**metric, n.TOKEN_TYPE: "output"})
        return outcome

    async def tool_call(
        self, router: Any, invocation: Any, proceed: Callable[[], Awaitable[T]]
    ) -> T:
        name = invocation.name
        attributes: dict[str, Any] = {
            n.OPERATION: "execute_tool",
            n.TOOL_NAME: name,
            n.TOOL_CALL_ID: invocation.id,
            n.TOOL_TYPE: "function",
        }
        description = tool_description(router, name)
        if description is not None:
            attributes[n.TOOL_DESCRIPTION] = description
        span = self.tracer.start_span(
            f"execute_tool {name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        result = await self._run(span, "execute_tool", proceed, read=False)
        return result

    async def _run(
        self,
        span: trace.Span,
        operation: str,
        proceed: Callable[[], Awaitable[T]],
        *,
        read: bool = True,
    ) -> T:
        """Runs ``proceed`` with ``span`` current; ends the span with what came out.

        With ``read``, the result's usage, finish reason and steps become attributes.
        """
        counted = {n.OPERATION: operation}
        self.in_flight.add(1, counted)
        token = context.attach(trace.set_span_in_context(span))
        try:
            result = await proceed()
        except Exception as exc:
            _failed(span, exc)
            raise
        except BaseException:
            # cancelled: a failure only when it is a tool's own time budget running out
            spent = _tool_budget_spent()
            if spent is not None:
                span.set_attribute(n.ERROR_TYPE, n.class_name(spent[0]))
                span.set_status(Status(StatusCode.ERROR, spent[1]))
            raise
        else:
            if read:
                _succeeded(span, result)
            return result
        finally:
            context.detach(token)
            span.end()
            self.in_flight.add(-1, counted)


def _failed(span: trace.Span, error: BaseException) -> None:
    span.set_attribute(n.ERROR_TYPE, n.error_type(error))
    span.set_status(Status(StatusCode.ERROR, str(error) or None))


def _succeeded(span: trace.Span, result: object) -> None:
    """Records what a run's or a step's result says: tokens, finish reason, steps."""
    usage = getattr(result, "usage", None)
    if usage is not None and hasattr(usage, "input_tokens"):
        span.set_attribute(n.INPUT_TOKENS, usage.input_tokens)
        span.set_attribute(n.OUTPUT_TOKENS, usage.output_tokens)
        if usage.cache_read_tokens is not None:
            span.set_attribute(n.CACHE_READ_TOKENS, usage.cache_read_tokens)
        if usage.cache_write_tokens is not None:
            span.set_attribute(n.CACHE_WRITE_TOKENS, usage.cache_write_tokens)
    finish = getattr(result, "finish_reason", None)
    if isinstance(finish, str):
        span.set_attribute(n.FINISH_REASONS, [finish])
    steps = getattr(result, "steps", None)
    if isinstance(steps, int):
        span.set_attribute(n.AGENT_STEPS, steps)


def _tool_budget_spent() -> tuple[type[Elapsed], str] | None:
    """The error a batch raises for this tool call, if its ``tool_timeout`` (or wait) ran out.

    A `ParallelToolRouter` with a time budget cancels the call from outside, where the span
    sees only the cancellation: the call's clock tells whether it was the budget.
    """
    clock = current_clock.get()
    if clock is None or not clock.scope.cancel_called:
        return None
    if anyio.current_time() < clock.scope.deadline or math.isinf(clock.scope.deadline):
        return None  # cancelled for another reason (the batch failing fast, the caller)
    if clock.waiting:
        return WaitElapsed, "the tool did not start within its wait_timeout"
    return Elapsed, "the tool timed out (tool_timeout)"


_telemetry: _Telemetry | None = None


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Turns on towerpy's spans, span events and metrics.

    From now on each `Agent.run` is an ``invoke_agent {name}`` span, each of its model calls a
    ``chat {model}`` span and each `ToolRouter.call` an ``execute_tool {tool}`` span, with the
    GenAI semantic-convention attributes; every wait in a towerpy limit (a concurrency permit,
    rate tokens, a buffer's queue, a retry's backoff, a provider quota) is a ``towerpy.wait``
    event on the span current while it waited, with ``towerpy.layer``, ``towerpy.wait.reason``
    and ``towerpy.wait.seconds``; and the metrics ``towerpy.wait.duration``, ``towerpy.queued``,
    ``towerpy.in_flight``, ``towerpy.retries``, ``towerpy.timeouts``, ``towerpy.sheds``,
    ``towerpy.circuit.opens``, ``gen_ai.client.token.usage`` and
    ``gen_ai.client.operation.duration`` are recorded. Calling it again replaces the providers.

    Args:
        tracer_provider: Where spans go; default: the global one (``opentelemetry.trace``).
        meter_provider: Where metrics go; default: the global one (``opentelemetry.metrics``).
    """
    global _telemetry
    tracer = trace.get_tracer(_SCOPE, _VERSION, tracer_provider=tracer_provider)
    meter = metrics.get_meter(_SCOPE, _VERSION, meter_provider=meter_provider)
    telemetry = _Telemetry(tracer, meter)
    if _telemetry is not None:
        _observe.uninstall(_telemetry)
    _telemetry = telemetry
    _observe.install(telemetry)


def uninstrument() -> None:
    """Turns towerpy's spans and metrics off again (nothing happens if they were off)."""
    global _telemetry
    if _telemetry is not None:
        _observe.uninstall(_telemetry)
        _telemetry = None


def instrumented() -> bool:
    """Whether `instrument` is in effect."""
    return _telemetry is not None


_global_tracer = trace.get_tracer(_SCOPE, _VERSION)  # follows the global provider once it is set


def tracer() -> trace.Tracer:
    """The tracer `TraceLayer` uses: `instrument`'s, else the global provider's."""
    return _global_tracer if _telemetry is None else _telemetry.tracer
