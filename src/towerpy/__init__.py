"""Composable, concurrency-correct middleware for async Python services and LLM agents."""

from ._builder import ServiceBuilder
from ._service import Identity, Layer, LayerFn, Middleware, Service, ServiceFn, layer_fn, service_fn
from .errors import (
    Elapsed,
    InvalidToolArguments,
    MaxStepsExceeded,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestTooLarge,
    ScriptExhausted,
    ServiceClosed,
    ToolError,
    ToolNotFound,
    TowerError,
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
    "Elapsed",
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
    "ScriptExhausted",
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
