"""A service whose requests a test answers by hand, and whose readiness a test controls."""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Generic, TypeVar, final

import anyio
from typing_extensions import override

from .._service import Service
from .._validate import check_instance, check_int
from .._waiter import Permits
from ..lowlevel import held, hold, take_or_acquire_nowait, wait_for_capacity

__all__ = ["MockHandle", "MockService", "Responder", "mock_service"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


@final
class Responder(Generic[RespT]):
    """Answers one request that reached a `MockService`.

    ``send`` and ``fail`` are plain methods: call them from the test, no await needed. Answering a
    caller that has already gone (cancelled) does nothing; `cancelled` tells whether it has.
    """

    __slots__ = ("_answered", "_done", "_error", "_value", "cancelled")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._answered = False
        self._value: RespT | None = None
        self._error: BaseException | None = None
        self.cancelled = False

    def send(self, value: RespT) -> None:
        """Makes the call return ``value``.

        Raises:
            RuntimeError: The request was already answered.
        """
        self._answer()
        self._value = value
        self._done.set()

    def fail(self, exc: BaseException) -> None:
        """Makes the call raise ``exc``.

        Raises:
            TypeError: ``exc`` is not an exception.
            RuntimeError: The request was already answered.
        """
        check_instance("exc", exc, BaseException, "an exception")
        self._answer()
        self._error = exc
        self._done.set()

    @property
    def answered(self) -> bool:
        """Whether `send` or `fail` was called."""
        return self._answered

    def _answer(self) -> None:
        if self._answered:
            raise RuntimeError("this request was already answered")
        self._answered = True

    async def _wait(self) -> RespT:
        try:
            await self._done.wait()
        except BaseException:
            self.cancelled = True
            raise
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@final
class MockHandle(Generic[ReqT, RespT]):
    """The test's side of a `MockService`: receives its requests and sets its readiness."""

    __slots__ = ("_allowances", "_received", "_requests")

    def __init__(self) -> None:
        self._allowances = Permits(math.inf)
        self._requests: deque[tuple[ReqT, Responder[RespT]]] = deque()
        self._received: anyio.Event | None = None  # created on demand: needs a running loop

    def allow(self, n: int | None) -> None:
        """Sets how many more calls may become ready (None: any number), replacing the old count.

        Each call, or each reservation ``ready()`` makes, uses one. With 0, the service is not
        ready: ``ready()`` and ``call()`` wait, ``try_ready()`` returns False.

        Raises:
            TypeError: ``n`` is neither an int nor None.
            ValueError: ``n`` is negative.
        """
        if n is not None:
            check_int("n", n, minimum=0)
        self._allowances.set_available(math.inf if n is None else n)

    @property
    def allowed(self) -> float:
        """How many more calls may become ready (``math.inf`` when unlimited)."""
        return self._allowances.available

    @property
    def pending(self) -> int:
        """Requests received and not yet taken by `next_request`."""
        return len(self._requests)

    async def next_request(self) -> tuple[ReqT, Responder[RespT]]:
        """Waits for the next request (in the order they arrived); returns it with its responder."""
        while not self._requests:
            if self._received is None:
                self._received = anyio.Event()
            await self._received.wait()
        return self._requests.popleft()

    def try_next_request(self) -> tuple[ReqT, Responder[RespT]] | None:
        """Returns the next request with its responder, or None when none is waiting."""
        return self._requests.popleft() if self._requests else None

    # --- the service's side ---------------------------------------------------------------

    def _take_nowait(self) -> bool:
        return self._allowances.take_nowait()

    def _take_nowait_token(self) -> bool | None:
        return True if self._allowances.take_nowait() else None

    async def _take(self) -> bool:
        await self._allowances.take()
        return True

    def _give_back(self, _token: bool) -> None:
        self._allowances.give()

    def _receive(self, request: ReqT) -> Responder[RespT]:
        responder: Responder[RespT] = Responder()
        self._requests.append((request, responder))
        if self._received is not None:
            self._received.set()
            self._received = None
        return responder


@final
class MockService(Service[ReqT, RespT], direct_call=True):
    """A service answered by hand through its `MockHandle`. Build it with `mock_service`.

    ``ready()`` waits until the handle allows another call and reserves that allowance for the
    calling task; ``call()`` uses the reservation (or waits for an allowance itself), hands the
    request to the handle, and waits for the test to answer it.
    """

    __slots__ = ("_handle",)
    _towerpy_sheds = "stop"

    def __init__(self, handle: MockHandle[ReqT, RespT]) -> None:
        self._handle = handle

    @property
    def handle(self) -> MockHandle[ReqT, RespT]:
        """The handle that answers this service's requests and sets its readiness."""
        return self._handle

    @override
    async def ready(self) -> None:
        handle = self._handle
        if held(self) is None:
            hold(self, await handle._take(), handle._give_back)

    @override
    async def try_ready(self) -> bool:
        handle = self._handle
        if held(self) is None:
            if not handle._take_nowait():
                return False
            hold(self, True, handle._give_back)
        return True

    @override
    async def call(self, request: ReqT) -> RespT:
        handle = self._handle
        if take_or_acquire_nowait(self, handle._take_nowait_token) is None:
            await wait_for_capacity(self, handle._take)
        return await handle._receive(request)._wait()

    def __repr__(self) -> str:
        return f"MockService(allowed={self._handle.allowed}, pending={self._handle.pending})"


def mock_service() -> tuple[MockService[Any, Any], MockHandle[Any, Any]]:
    """Makes a service that a test drives by hand.

    Returns:
        The service, and the handle through which the test receives its requests
        (`MockHandle.next_request`), answers them (`Responder.send` / `Responder.fail`) and sets
        how many calls may become ready (`MockHandle.allow`).

    Example:
        >>> svc, handle = mock_service()
        >>> async with anyio.create_task_group() as tg:
        ...     tg.start_soon(svc, "ping")
        ...     request, responder = await handle.next_request()
        ...     responder.send("pong")
    """
    handle: MockHandle[Any, Any] = MockHandle()
    return MockService(handle), handle
