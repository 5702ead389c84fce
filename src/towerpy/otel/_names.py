"""The names towerpy's telemetry uses: GenAI semantic-convention attributes and its own.

The GenAI names follow the OpenTelemetry semantic conventions for generative AI
(https://opentelemetry.io/docs/specs/semconv/gen-ai/), spelled out here rather than imported
from ``opentelemetry-semantic-conventions``, whose GenAI module is still "incubating".
"""

from __future__ import annotations

__all__ = [
    "AGENT_NAME",
    "ERROR_TYPE",
    "LAYER",
    "OPERATION",
    "PROVIDER",
    "REQUEST_MODEL",
    "TOKEN_TYPE",
    "TOOL_CALL_ID",
    "TOOL_DESCRIPTION",
    "TOOL_NAME",
    "TOOL_TYPE",
    "WAIT_REASON",
    "WAIT_SECONDS",
    "class_name",
    "error_type",
]

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
AGENT_NAME = "gen_ai.agent.name"
REQUEST_MODEL = "gen_ai.request.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
TOKEN_TYPE = "gen_ai.token.type"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_DESCRIPTION = "gen_ai.tool.description"
ERROR_TYPE = "error.type"

LAYER = "towerpy.layer"
WAIT_REASON = "towerpy.wait.reason"
WAIT_SECONDS = "towerpy.wait.seconds"
AGENT_STEPS = "towerpy.agent.steps"
RETRY_ATTEMPT = "towerpy.retry.attempt"
RETRY_DELAY = "towerpy.retry.delay"
TIMEOUT_SECONDS = "towerpy.timeout.seconds"

WAIT_EVENT = "towerpy.wait"
RETRY_EVENT = "towerpy.retry"
GIVE_UP_EVENT = "towerpy.retry.give_up"
SHED_EVENT = "towerpy.shed"
CIRCUIT_OPEN_EVENT = "towerpy.circuit.open"

# gen_ai.client.token.usage and gen_ai.client.operation.duration: the conventions' buckets
TOKEN_BUCKETS = [4.0**n for n in range(14)]  # 1, 4, 16, ... 67108864
DURATION_BUCKETS = [0.01 * 2.0**n for n in range(14)]  # 0.01, 0.02, ... 81.92 s
# towerpy.wait.duration: from a millisecond to minutes of waiting for a token budget
WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]


def error_type(error: BaseException) -> str:
    """The ``error.type`` of an exception: its class's qualified name (builtins: bare)."""
    return class_name(type(error))


def class_name(cls: type) -> str:
    """A class's qualified name, with its module unless it is a builtin."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
