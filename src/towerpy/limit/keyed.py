"""KeyedConcurrencyLimit: a separate concurrency limit per key (per agent, per tool, per tenant)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, final

from typing_extensions import override

from .._service import Middleware, Service
from .._validate import check_mapping, check_plain_function, check_positive_int
from ..lowlevel import refuse_if_shedding
from .concurrency import ConcurrencyLimiter, ConcurrencyStatistics

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

__all__ = ["KeyedConcurrencyLimit", "KeyedConcurrencyLimitLayer", "KeyedConcurrencyStatistics"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@dataclass(frozen=True, slots=True)
class KeyedConcurrencyStatistics:
    """What a keyed concurrency limit is doing at one instant.

    Attributes:
        keys: Per key: every key given in ``limits``, and every other key with requests in
            flight or waiting (a key that only has the default limit is forgotten when idle).
        in_flight: Requests in flight, all keys together (unlimited keys are not counted).
        waiting: Requests waiting, all keys together.
    """

    keys: Mapping[Hashable, ConcurrencyStatistics]
    in_flight: int
    waiting: int


def _check_limits(key: object, limits: Mapping[Any, int], default: int | None) -> dict[Any, int]:
    check_plain_function("key", key)
    check_mapping("limits", limits, what="a mapping from key to max_in_flight")
    checked = {k: check_positive_int(f"limits[{k!r}]", v) for k, v in limits.items()}
    if default is not None:
        check_positive_int("default", default)
    return checked


@final
class KeyedConcurrencyLimit(Middleware[ReqT, RespT], direct_call=True):
    """Enforces a separate limit on requests in flight for each key of the requests.

    ``key(request)`` names the group a request belongs to (its agent, tool or tenant). Requests
    of a key given in ``limits`` have that many in flight at most; other keys have ``default``
    each, or no limit when ``default`` is None. Keys are independent: a busy key never delays
    another. Within a key, waiters are served first-come first-served.

    - ``ready()`` cannot know the key of the next request, so it reserves nothing here: it only
      waits for the inner service (``try_ready()`` likewise).
    - ``call()`` computes the key, waits for a permit of that key, calls the inner service and
      gives the permit back when the call returns, raises or is cancelled.

    It raises what ``key`` raises, and the inner service's errors unchanged.

    Args:
        inner: The service to protect.
        key: A plain function from a request to a hashable key.
        limits: The limit of each known key.
        default: The limit of every other key, each on its own; None for no limit.

    Raises:
        ValueError: A limit is below 1.
        TypeError: ``key`` is not a plain function, or a limit is not an int.
    """

    __slots__ = ("_default", "_key", "_limiters", "_limits")
    _towerpy_sheds = True

    def __init__(
        self,
        inner: Service[ReqT, RespT],
        key: Callable[[ReqT], Hashable],
        limits: Mapping[Any, int],
        default: int | None = None,
    ) -> None:
        self._limits = _check_limits(key, limits, default)
        super().__init__(inner)
        self._key = key
        self._default = default
        self._limiters: dict[Hashable, ConcurrencyLimiter] = {}

    @override
    async def call(self, request: ReqT) -> RespT:
        try:
            key = self._key(request)
        except BaseException:
            self.inner.drop_reservation()  # refused before the call: free what ready() took
            raise
        limiter = self._limiters.get(key)
        if limiter is None:
            limit = self._limits.get(key, self._default)
            if limit is None:  # an unlimited key
                unlimited: RespT = await self.inner(request)
                return unlimited
            limiter = self._limiters[key] = ConcurrencyLimiter(limit)
        permit = limiter.acquire_nowait()
        if permit is None:
            try:
                refuse_if_shedding(self)
                permit = await limiter.acquire()
            except BaseException:
                self._forget_if_idle(key, limiter)
                self.inner.drop_reservation()
                raise
        try:
            result: RespT = await self.inner(request)
        finally:
            limiter.release(permit)
            self._forget_if_idle(key, limiter)
        return result

    def _forget_if_idle(self, key: Hashable, limiter: ConcurrencyLimiter) -> None:
        # keys seen only through `default` come and go (one per tenant, say): keep them bounded
        if limiter.idle and key not in self._limits and self._limiters.get(key) is limiter:
            del self._limiters[key]

    def statistics(self) -> KeyedConcurrencyStatistics:
        """Returns the statistics of each key, and the totals."""
        keys: dict[Hashable, ConcurrencyStatistics] = {
            key: ConcurrencyStatistics(limit, 0, 0) for key, limit in self._limits.items()
        }
        for key, limiter in self._limiters.items():
            keys[key] = limiter.statistics()
        return KeyedConcurrencyStatistics(
            MappingProxyType(keys),
            sum(stats.in_flight for stats in keys.values()),
            sum(stats.waiting for stats in keys.values()),
        )

    def __repr__(self) -> str:
        return (
            f"KeyedConcurrencyLimit({self.inner!r}, limits={self._limits!r}, "
            f"default={self._default!r})"
        )


@final
class KeyedConcurrencyLimitLayer:
    """Wraps services in `KeyedConcurrencyLimit`; each service gets its own counts.

    Args:
        key: A plain function from a request to a hashable key.
        limits: The limit of each known key.
        default: The limit of every other key, each on its own; None for no limit.

    Raises:
        ValueError: A limit is below 1.
        TypeError: ``key`` is not a plain function, or a limit is not an int.

    Example:
        >>> per_tool = KeyedConcurrencyLimitLayer(
        ...     key=lambda call: call.name, limits={"browser": 1}, default=4
        ... )
    """

    __slots__ = ("_default", "_key", "_limits")

    def __init__(
        self,
        key: Callable[[Any], Hashable],
        limits: Mapping[Any, int],
        default: int | None = None,
    ) -> None:
        self._limits = _check_limits(key, limits, default)
        self._key = key
        self._default = default

    def layer(self, inner: Service[ReqT, RespT]) -> KeyedConcurrencyLimit[ReqT, RespT]:
        """Returns ``inner`` wrapped in a `KeyedConcurrencyLimit`."""
        return KeyedConcurrencyLimit(inner, self._key, self._limits, self._default)

    def __repr__(self) -> str:
        return f"KeyedConcurrencyLimitLayer(limits={self._limits!r}, default={self._default!r})"
