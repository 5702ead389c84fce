"""LoadShed: fails at once with Overloaded when the inner service is not ready, never waits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, final

from typing_extensions import override

from ._service import Middleware, Service
from .errors import Overloaded

__all__ = ["LoadShed", "LoadShedLayer", "LoadShedStatistics"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@dataclass(frozen=True, slots=True)
class LoadShedStatistics:
    """What a load shedder has done.

    Attributes:
        shed: Requests refused with `Overloaded` so far.
    """

    shed: int


@final
class LoadShed(Middleware[ReqT, RespT]):
    """Refuses a request at once, with `Overloaded`, when the inner service is not ready.

    Put it outside a limit to turn waiting into an immediate failure: a caller that would
    queue behind a full concurrency limit, an empty token bucket or a full buffer gets
    `Overloaded` instead, and can shed the work, retry later or pick another service.

    - ``ready()`` never waits: it reserves the inner service's capacity if that needs no
      waiting (``try_ready()``), and returns either way.
    - ``call()`` uses the task's reservation if it has one; otherwise it reserves without
      waiting, and raises `Overloaded` if it cannot. Then it calls the inner service.
    - ``try_ready()`` is always True: the next ``call()`` never waits here.

    Raises:
        Overloaded: From ``call()``, when the inner service is not ready at once. Nothing was
            sent to the inner service and nothing is held.

    Args:
        inner: The service to protect.
    """

    __slots__ = ("_shed",)

    def __init__(self, inner: Service[ReqT, RespT]) -> None:
        super().__init__(inner)
        self._shed = 0

    @override
    async def ready(self) -> None:
        await self.inner.try_ready()  # reserve if free; never wait

    @override
    async def try_ready(self) -> bool:
        await self.inner.try_ready()
        return True

    @override
    async def call(self, request: ReqT) -> RespT:
        if not await self.inner.try_ready():
            self._shed += 1
            raise Overloaded("service overloaded: the inner service is not ready")
        result: RespT = await self.inner.call(request)  # try_ready() reserved its capacity
        return result

    __call__ = call  # ready() + call() is call(): call() reserves what ready() would have

    def statistics(self) -> LoadShedStatistics:
        """Returns how many requests were shed."""
        return LoadShedStatistics(self._shed)

    def __repr__(self) -> str:
        return f"LoadShed({self.inner!r})"


@final
class LoadShedLayer:
    """Wraps services in `LoadShed`.

    Example:
        >>> svc = ServiceBuilder().layer(LoadShedLayer()).concurrency_limit(8).service(step)
    """

    __slots__ = ()

    def layer(self, inner: Service[ReqT, RespT]) -> LoadShed[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `LoadShed`."""
        return LoadShed(inner)

    def __repr__(self) -> str:
        return "LoadShedLayer()"
