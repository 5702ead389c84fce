"""Balance: spreads requests over several services, skipping those that are not ready."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Literal, Self, TypeVar

import anyio
from typing_extensions import override

from .._backend import current_time
from .._service import Service, callable_name
from .._validate import check_positive_number
from ..lowlevel import drop, held, hold, take
from ._endpoint import BalanceStatistics, Endpoint, EndpointStatistics, give_back
from ._first_ready import first_ready

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType


__all__ = ["Balance", "BalanceStatistics", "EndpointStatistics"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_UNMEASURED = 1.0  # the latency that endpoints are assumed to have before any is measured


def _check_service(service: object) -> None:
    if isinstance(service, Service):
        return
    if callable(service):
        raise TypeError(
            f"Balance needs Service endpoints, got the function {callable_name(service)!r}; "
            f"wrap it with service_fn()"
        )
    raise TypeError(f"Balance needs Service endpoints, got {type(service).__name__}")


class Balance(Service[ReqT, RespT], direct_call=True):
    """Sends each request to one of several services (API keys, replicas, regions).

    It never sends a request to an endpoint whose ``try_ready()`` is False while another's is
    True: an endpoint whose circuit is open, whose rate limit has no token, whose concurrency
    limit is full, is skipped without being sent anything. Among the ready ones:

    - ``choose="p2c"`` (the default, as tower's balance): two picked at random, the less loaded
      gets the request. Load is the endpoint's peak-EWMA latency times its calls in flight
      plus one: an endpoint that answers slowly, or has many calls running, gets fewer. The
      estimate takes a slower answer at once and moves toward faster ones over ``decay``
      seconds; before an endpoint's first answer, the mean of the others' is assumed. A
      failed call counts as an answer as slow as it took (one that hung until a timeout
      makes its endpoint look slow), but never as a faster one than the estimate.
    - ``choose="round_robin"``: the next ready one in turn.

    When none is ready, it waits for the first endpoint that becomes ready (racing their
    ``ready()`` in tasks of its own, no polling) and sends the request there; an endpoint
    whose circuit is open counts as ready when the circuit lets a probe through. An endpoint
    whose ``ready()`` fails is skipped while others remain.

    - ``ready()`` picks the endpoint and reserves its capacity for the calling task's next
      ``call()``, which goes there. Probing reserves on each endpoint it asks; what it
      reserved on an endpoint it did not pick is given back at once.
    - ``try_ready()`` is the same without waiting: False, holding nothing, when no endpoint
      is ready now.
    - ``call()`` uses the task's pick, or picks now (waiting as ``ready()`` does).
    - `add` and `remove` change the endpoints at run time; a call already sent to a removed
      endpoint runs to its end, a reservation on one is given back and a new pick made.
    - ``async with`` enters every endpoint (and leaves them); an endpoint added while running
      must be running already. With no endpoints, ``ready()`` waits for one to be added.

    Args:
        services: The endpoints.
        choose: ``"p2c"`` or ``"round_robin"``.
        decay: Seconds over which the latency estimate forgets (p2c).
        rng: The random number generator of p2c (seed one for reproducible runs).

    Raises:
        TypeError: An endpoint is not a `Service`.
        ValueError: ``choose`` is neither, or ``decay`` is not a number above 0.
    """

    __slots__ = ("_changed", "_choose", "_cursor", "_decay", "_endpoints", "_entered", "_random")

    def __init__(
        self,
        services: Iterable[Service[ReqT, RespT]],
        *,
        choose: Literal["p2c", "round_robin"] = "p2c",
        decay: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if choose not in ("p2c", "round_robin"):
            raise ValueError(f'choose must be "p2c" or "round_robin", got {choose!r}')
        self._decay = check_positive_number("decay", decay)
        endpoints = []
        for service in services:
            _check_service(service)
            endpoints.append(Endpoint(service))
        self._endpoints: tuple[Endpoint[ReqT, RespT], ...] = tuple(endpoints)
        self._choose = choose
        self._random = random.Random() if rng is None else rng
        self._cursor = 0
        self._changed: anyio.Event | None = None
        self._entered: list[Service[ReqT, RespT]] | None = None

    # --- endpoints ------------------------------------------------------------------------

    @property
    def services(self) -> tuple[Service[ReqT, RespT], ...]:
        """The endpoints, in the order they were added."""
        return tuple(endpoint.service for endpoint in self._endpoints)

    def add(self, service: Service[ReqT, RespT]) -> None:
        """Adds an endpoint; requests waiting for a ready endpoint look at it at once.

        Raises:
            TypeError: ``service`` is not a `Service`.
        """
        _check_service(service)
        self._endpoints = (*self._endpoints, Endpoint(service))
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def remove(self, service: Service[ReqT, RespT]) -> None:
        """Removes an endpoint (the object itself); its calls in flight run to their end.

        Raises:
            ValueError: ``service`` is not one of the endpoints.
        """
        for endpoint in self._endpoints:
            if endpoint.service is service:
                endpoint.removed = True
                self._endpoints = tuple(e for e in self._endpoints if e is not endpoint)
                return
        raise ValueError(f"{service!r} is not an endpoint of this Balance")

    # --- readiness ------------------------------------------------------------------------

    @override
    async def ready(self) -> None:
        reservation = held(self)
        if reservation is not None:
            if not reservation.token.removed:
                return
            drop(self)
        endpoint = await self._probe()
        if endpoint is None:
            endpoint = await self._wait()
        hold(self, endpoint, give_back)

    @override
    async def try_ready(self) -> bool:
        reservation = held(self)
        if reservation is not None:
            if not reservation.token.removed:
                return True
            drop(self)
        endpoint = await self._probe()
        if endpoint is None:
            return False
        hold(self, endpoint, give_back)
        return True

    @override
    def drop_reservation(self) -> None:
        drop(self)  # and, through _give_back, what the pick holds on its endpoint

    async def _probe(self) -> Endpoint[ReqT, RespT] | None:
        """Picks a ready endpoint without waiting; its capacity is reserved for this task."""
        endpoints = self._endpoints
        count = len(endpoints)
        if self._choose == "round_robin":
            start = self._cursor
            for step in range(count):
                index = (start + step) % count
                endpoint = endpoints[index]
                if await endpoint.service.try_ready():
                    self._cursor = index + 1
                    return endpoint
            return None
        # p2c: the first two ready ones of a random order are a uniform pair of the ready ones
        pool = list(endpoints)
        first: Endpoint[ReqT, RespT] | None = None
        while pool:
            index = self._random.randrange(len(pool))
            endpoint = pool[index]
            pool[index] = pool[-1]
            pool.pop()
            if not await endpoint.service.try_ready():
                continue
            if first is None:
                first = endpoint
                continue
            loser, first = (
                (endpoint, first) if self._cheaper(first, endpoint) else (first, endpoint)
            )
            loser.service.drop_reservation()  # probed, not picked: its capacity goes back now
            return first
        return first

    def _cheaper(self, a: Endpoint[ReqT, RespT], b: Endpoint[ReqT, RespT]) -> bool:
        """Tells whether ``a`` is no more loaded than ``b`` (tower: ``aload <= bload``)."""
        now = current_time()
        decay = self._decay
        latency_a = a.latency(now, decay)
        latency_b = b.latency(now, decay)
        if latency_a is None or latency_b is None:
            assumed = self._assumed_latency(now)
            latency_a = assumed if latency_a is None else latency_a
            latency_b = assumed if latency_b is None else latency_b
        return latency_a * (a.in_flight + 1) <= latency_b * (b.in_flight + 1)

    def _assumed_latency(self, now: float) -> float:
        known = [
            latency
            for endpoint in self._endpoints
            if (latency := endpoint.latency(now, self._decay)) is not None
        ]
        return sum(known) / len(known) if known else _UNMEASURED

    async def _wait(self) -> Endpoint[ReqT, RespT]:
        """Waits for the first endpoint to become ready; its capacity is reserved for this task."""
        while True:
            endpoints = self._endpoints
            if self._changed is None:
                self._changed = anyio.Event()
            endpoint = await first_ready(endpoints, self._changed)
            if endpoint is not None:
                if not endpoint.removed:
                    return endpoint
                endpoint.service.drop_reservation()
            picked = await self._probe()  # the endpoints changed: look at them all again
            if picked is not None:
                return picked

    # --- calls ----------------------------------------------------------------------------

    @override
    async def call(self, request: ReqT) -> RespT:
        reservation = take(self)
        endpoint = None if reservation is None else reservation.token
        if endpoint is None or endpoint.removed:
            if endpoint is not None:
                endpoint.service.drop_reservation()
            endpoint = await self._probe()
            if endpoint is None:
                endpoint = await self._wait()
        endpoint.in_flight += 1
        endpoint.requests += 1
        start = current_time()
        try:
            response: RespT = await endpoint.service.call(request)  # with the pick's reservation
        except Exception:
            now = current_time()
            # a failure only ever raises the estimate: a call that hung until its timeout makes
            # the endpoint look slow, one that failed fast must not make it look fast
            endpoint.observe(
                now, max(now - start, endpoint.latency(now, self._decay) or 0.0), self._decay
            )
            raise
        finally:
            endpoint.in_flight -= 1
        now = current_time()
        endpoint.observe(now, now - start, self._decay)
        return response

    # --- lifecycle ------------------------------------------------------------------------

    @override
    async def __aenter__(self) -> Self:
        entered: list[Service[ReqT, RespT]] = []
        try:
            for endpoint in self._endpoints:
                await endpoint.service.__aenter__()
                entered.append(endpoint.service)
        except BaseException as exc:
            for service in reversed(entered):
                await service.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._entered = entered
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered, self._entered = self._entered or [], None
        error: BaseException | None = None
        for service in reversed(entered):
            try:
                await service.__aexit__(exc_type, exc, tb)
            except BaseException as failure:
                error = error or failure
        if error is not None:
            raise error

    def statistics(self) -> BalanceStatistics:
        """Returns each endpoint's calls in flight, requests so far and latency estimate."""
        now = current_time()
        return BalanceStatistics(
            tuple(
                EndpointStatistics(e.service, e.in_flight, e.requests, e.latency(now, self._decay))
                for e in self._endpoints
            )
        )

    def __repr__(self) -> str:
        return f"Balance({list(self.services)!r}, choose={self._choose!r})"
