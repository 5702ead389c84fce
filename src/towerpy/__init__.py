"""Composable, concurrency-correct middleware for async Python services and LLM agents."""

from ._builder import ServiceBuilder
from ._service import Identity, Layer, LayerFn, Middleware, Service, ServiceFn, layer_fn, service_fn
from .buffer import Buffer, BufferLayer
from .errors import (
    Elapsed,
    InvalidToolArguments,
    MaxStepsExceeded,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestTooLarge,
    ServiceClosed,
    ToolError,
    ToolNotFound,
    TowerError,
)
from .retry import (
    Backoff,
    ConstantBackoff,
    ExponentialBackoff,
    Retry,
    RetryBudget,
    RetryLayer,
    RetryPolicy,
)
from .util import (
    MapErr,
    MapErrLayer,
    MapRequest,
    MapRequestLayer,
    MapResponse,
    MapResponseLayer,
    option_layer,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "Backoff",
    "Buffer",
    "BufferLayer",
    "ConstantBackoff",
    "Elapsed",
    "ExponentialBackoff",
    "Identity",
    "InvalidToolArguments",
    "Layer",
    "LayerFn",
    "MapErr",
    "MapErrLayer",
    "MapRequest",
    "MapRequestLayer",
    "MapResponse",
    "MapResponseLayer",
    "MaxStepsExceeded",
    "Middleware",
    "Overloaded",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "RequestTooLarge",
    "Retry",
    "RetryBudget",
    "RetryLayer",
    "RetryPolicy",
    "Service",
    "ServiceBuilder",
    "ServiceClosed",
    "ServiceFn",
    "ToolError",
    "ToolNotFound",
    "TowerError",
    "layer_fn",
    "option_layer",
    "service_fn",
]
