"""Retries: the layer, its policy, backoff and budget, and Retry-After parsing."""

from .after import parse_retry_after, retry_after_from_headers
from .backoff import Backoff, ConstantBackoff, ExponentialBackoff
from .budget import RetryBudget
from .layer import Retry, RetryLayer
from .policy import Policy, RetryPolicy

__all__ = [
    "Backoff",
    "ConstantBackoff",
    "ExponentialBackoff",
    "Policy",
    "Retry",
    "RetryBudget",
    "RetryLayer",
    "RetryPolicy",
    "parse_retry_after",
    "retry_after_from_headers",
]
