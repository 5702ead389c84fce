"""Test helpers: drive a service by hand, probe concurrency, and run in virtual time."""

from .contract import ServiceContract
from .mock import MockHandle, MockService, Responder, mock_service
from .probe import InFlightProbe
from .virtual import VirtualTimeEventLoop, wait_all_tasks_blocked

__all__ = [
    "InFlightProbe",
    "MockHandle",
    "MockService",
    "Responder",
    "ServiceContract",
    "VirtualTimeEventLoop",
    "mock_service",
    "wait_all_tasks_blocked",
]
