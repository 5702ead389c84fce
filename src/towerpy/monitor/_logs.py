"""Plain `logging` of what towerpy's limits do: one logger per area, nothing per success."""

from __future__ import annotations

import logging
from typing import final

from .. import _observe

__all__ = ["LOGGERS", "log_events"]

LOGGERS = {
    "concurrency_limit": "towerpy.limit",
    "rate_limit": "towerpy.limit",
    "buffer": "towerpy.buffer",
    "retry": "towerpy.retry",
    "provider_quota": "towerpy.quota",
    "load_shed": "towerpy.load_shed",
    "timeout": "towerpy.timeout",
    "circuit_breaker": "towerpy.circuit_breaker",
}
"""The logger of each layer; any other layer logs to ``towerpy.<layer>``."""

logging.getLogger("towerpy").addHandler(logging.NullHandler())  # a library's manners


def _logger(layer: str) -> logging.Logger:
    return logging.getLogger(LOGGERS.get(layer) or f"towerpy.{layer}")


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@final
class _Logs(_observe.Observer):
    """DEBUG for waits, retries, timeouts and sheds; WARNING for give-ups and circuits opening."""

    def wait_ended(self, layer: str, reason: str, seconds: float) -> None:
        if layer == "retry":
            return  # the retry itself was logged, with its delay
        logger = _logger(layer)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("waited %.3f s in %s for %s", seconds, layer, reason)

    def retrying(self, error: BaseException, attempt: int, delay: float) -> None:
        logger = _logger("retry")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "attempt %d failed (%s); retrying in %.3f s", attempt, _error(error), delay
            )

    def gave_up(self, error: BaseException, attempt: int) -> None:
        if attempt > 1:  # retries were made, and did not help
            _logger("retry").warning("gave up after %d attempts: %s", attempt, _error(error))
        else:  # the policy does not retry this error: nothing was given up
            _logger("retry").debug("not retried: %s", _error(error))

    def timed_out(self, error: BaseException) -> None:
        logger = _logger("timeout")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", error)

    def shed(self, layer: str) -> None:
        logger = _logger(layer)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("request shed: the service below was not ready")

    def circuit_opened(self, layer: str, retry_after: float) -> None:
        _logger(layer).warning("circuit opened; next probe in %.3f s", retry_after)


_LOGS = _Logs()


def log_events(enabled: bool = True) -> None:
    """Turns towerpy's log lines on (or off): the logging twin of `towerpy.otel.instrument`.

    Once on, the loggers ``towerpy.limit`` (concurrency and rate limits), ``towerpy.buffer``,
    ``towerpy.retry``, ``towerpy.timeout``, ``towerpy.load_shed`` and, for the layers that
    report them, ``towerpy.quota`` and ``towerpy.circuit_breaker`` log at DEBUG each wait that
    happened (with its seconds), each retry, each timeout and each shed request, and at WARNING
    each time a `RetryLayer` gives up after retrying and each time a circuit opens. A call that
    passes its limits at once logs nothing, at any level. Off (the default), towerpy does not
    reach `logging` at all: configure levels and handlers as usual, then call this.

    Args:
        enabled: True to log, False to stop.
    """
    if enabled:
        _observe.install(_LOGS)
    else:
        _observe.uninstall(_LOGS)
