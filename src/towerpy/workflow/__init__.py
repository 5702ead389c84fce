"""Workflows: services made of services, run one after another, side by side, or over many items."""

from ..tools._join import JoinPolicy
from .mapreduce import MapReduce
from .parallel import Parallel
from .sequential import Sequential

__all__ = ["JoinPolicy", "MapReduce", "Parallel", "Sequential"]
