"""OpenTelemetry traces and metrics for towerpy (extra ``otel``): `instrument`, `TraceLayer`.

``instrument()`` turns on the built-in spans, named and attributed after the OpenTelemetry
GenAI semantic conventions: ``invoke_agent {name}`` around each `Agent.run`, ``chat {model}``
around each model call, ``execute_tool {tool}`` around each `ToolRouter.call`. Every wait in a
towerpy limit becomes a ``towerpy.wait`` event on the span current while it waited, and the
metrics count waits, retries, timeouts, sheds and tokens. Not instrumented, towerpy does not
call into OpenTelemetry at all. `TraceLayer` puts a span around each call of any service.

Needs ``opentelemetry-api`` (``pip install 'towerpy[otel]'``); an SDK (``opentelemetry-sdk``)
or a distribution exports what it records.
"""

try:
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in every test run
    raise ImportError(
        "towerpy.otel needs OpenTelemetry: pip install 'towerpy[otel]' (opentelemetry-api)"
    ) from exc

from ._instrument import instrument, instrumented, uninstrument
from .layer import Traced, TraceLayer

__all__ = ["TraceLayer", "Traced", "instrument", "instrumented", "uninstrument"]
