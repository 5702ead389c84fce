"""Buffer: a bounded first-in first-out queue in front of a worker that owns the inner service.

The parts, as in tower's ``buffer``: `message` (a request on its way and where it stands),
`worker` (the task that sequences the inner service's readiness, and the queue's places, a
`towerpy._waiter.Permits`), `service` (`Buffer`, what callers await) and `layer`
(`BufferLayer`). How leaving the block cancels calls still running is each backend's own:
`towerpy._backend._cancel`.
"""

from .layer import BufferLayer
from .service import Buffer

__all__ = ["Buffer", "BufferLayer"]
