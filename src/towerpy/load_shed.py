"""LoadShed: fails at once with Overloaded when the inner service is not ready, never waits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, final

from typing_extensions import override

from . import _observe
from ._chain import iter_chain
from ._service import Middleware, Service
from .errors import Overloaded
from .lowlevel import Shed, shedding

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
class LoadShed(Middleware[ReqT, RespT], direct_call=True):
    """Refuses a request at once, with `Overloaded`, when the inner service is not ready.

    Put it outside a limit to turn waiting into an immediate failure: a caller that would
    queue behind a full concurrency limit, an empty token bucket or a full buffer gets
    `Overloaded` instead, and can shed the work, retry later or pick another service. Limits
    whose capacity depends on the request, which no readiness check can know beforehand (a
    rate limit with ``cost=``, a keyed concurrency limit), shed too: under a `LoadShed`, their
    ``call()`` refuses where it would have waited.

    - ``ready()`` never waits: it reserves the inner service's capacity if that needs no
      waiting (``try_ready()``), and returns either way.
    - ``call()`` uses the task's reservation if it has one. Otherwise, through the built-in
      towerpy layers below it, it goes straight in and each limit refuses instead of waiting
      (tokens a rate limit took for the request are given back). Where the stack goes on
      below some other layer (one of your own, or a `Retry`, which would retry the refusal),
      it first reserves the inner capacity without waiting (``try_ready()``) and raises
      `Overloaded` if it cannot; the request-dependent limits below such a layer are not
      reached (put ``load_shed()`` right above them). Nothing is held after a refusal.
    - ``try_ready()`` is always True: the next ``call()`` never waits here.

    Raises:
        Overloaded: From ``call()``, when the inner service is not ready at once. Nothing was
            sent to the inner service and nothing is held.

    Args:
        inner: The service to protect.
    """

    __slots__ = ("_direct", "_shed", "_shedding")
    _towerpy_sheds = True

    def __init__(self, inner: Service[ReqT, RespT]) -> None:
        super().__init__(inner)
        self._shed = 0
        members, self._direct = _shedding_chain(inner)
        # nothing below that could wait: no shedding context to enter on each call
        self._shedding = shedding(members) if members else None

    @override
    async def ready(self) -> None:
        await self.inner.try_ready()  # reserve if free; never wait

    @override
    async def try_ready(self) -> bool:
        await self.inner.try_ready()
        return True

    @override
    async def call(self, request: ReqT) -> RespT:
        if not self._direct and not await self.inner.try_ready():
            self._shed += 1
            if _observe.shed is not None:
                _observe.shed("load_shed")
            raise Overloaded("service overloaded: the inner service is not ready")
        scope = self._shedding
        if scope is None:
            unshed: RespT = await self.inner(request)
            return unshed
        try:
            with scope:
                result: RespT = await self.inner(request)
        except Shed:
            self._shed += 1
            if _observe.shed is not None:
                _observe.shed("load_shed")
            raise
        return result

    def statistics(self) -> LoadShedStatistics:
        """Returns how many requests were shed."""
        return LoadShedStatistics(self._shed)

    def __repr__(self) -> str:
        return f"LoadShed({self.inner!r})"


def _shedding_chain(inner: Service[Any, Any]) -> tuple[frozenset[int], bool]:
    """Returns the services below a `LoadShed` that must not wait, and whether that is all.

    The chain is followed down through the built-in towerpy layers: each declares
    ``_towerpy_sheds``, meaning it waits for capacity only through `towerpy.lowlevel` (so
    `shedding` reaches it) and passes an `Overloaded` from further in through unchanged
    (``"stop"``: and the chain ends with it). Any other service ends the chain: a layer of
    one's own, or a `Retry`, might catch, change or retry the refusal. When the chain reaches a
    service with no readiness of its own, `LoadShed` needs no ``try_ready()`` first.
    """
    members: set[int] = set()
    for service in iter_chain(inner):
        sheds = getattr(type(service), "_towerpy_sheds", False)
        if not sheds:
            return frozenset(members), getattr(type(service), "ready", None) is Service.ready
        members.add(id(service))
        if sheds == "stop":
            break
    return frozenset(members), True


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
