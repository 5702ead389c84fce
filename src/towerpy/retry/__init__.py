"""Retries: the layer, its policy, backoff and budget, and Retry-After parsing."""

from .after import parse_retry_after, retry_after_from_headers

__all__ = ["parse_retry_after", "retry_after_from_headers"]
