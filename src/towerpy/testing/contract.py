"""The ready()/call() contract as one reusable suite, for towerpy's layers and for your own.

Every service with capacity of its own (permits, tokens, queue places) must keep the same
reservation rules. Rather than testing them again for each layer, describe how to build the
layer with a given capacity, and run the checks::

    contract = ServiceContract(lambda inner, capacity: MyLimit(inner, capacity))

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", contract.checks())
    async def test_my_limit_keeps_the_contract(check: str) -> None:
        await contract.check(check)

(or ``await contract.check_all()`` in one test). The factory receives the inner service, a
`MockService` the suite answers by hand, and the capacity the check needs (1 or 2); the
service it returns must hold exactly that much capacity of its own. Each check runs inside
``async with service:``, in whatever time the test runs in (virtual time is best: a wait
that should not happen then fails at once, bounded by a virtual hour, ``bound``).

A service whose capacity is kept elsewhere (in Redis, behind a queue a background task
sends) is checked on the real clock: give ``bound`` a few seconds, start the background work
in the service's own ``__aenter__``, and pass ``settle``, awaited with the service before each
look at its capacity and, once every task has blocked, at who waits in it: it returns when
the remote state has caught up (what was queued is sent, every request under way has its
answer); the limiters of `towerpy.redis` have ``flush()`` for that (docs/distributed.md).

The profile says which rules apply: ``ready_reserves=False`` for a service whose ``ready()``
cannot reserve (its capacity depends on the request: a keyed limit, a rate limit with
``cost=``); ``capacity_returns=False`` for capacity that a call spends (rate tokens,
allowances) rather than gives back; ``sheds=True`` for a service that refuses with
`Overloaded` where others wait (a `LoadShed` over a limit).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.abc

from .._validate import check_callable, check_positive_number
from ..errors import Overloaded
from .mock import MockHandle, MockService, mock_service
from .virtual import wait_all_tasks_blocked

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._service import Service

__all__ = ["ServiceContract"]


class _Run:
    """One check's service, its inner mock, and the moves the checks are made of."""

    def __init__(self, contract: ServiceContract, capacity: int) -> None:
        inner, handle = mock_service()
        self.inner: MockService[Any, Any] = inner
        self.handle: MockHandle[Any, Any] = handle
        self.contract = contract
        self.service = contract.make(inner, capacity)

    async def answer(self) -> Any:
        """Waits (bounded) for the next request to reach the inner service, and answers it."""
        with anyio.fail_after(self.contract.bound):
            request, responder = await self.handle.next_request()
        responder.send(request)
        return request

    async def in_other_task(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Runs ``fn`` in a task of its own (nothing it reserves is this task's), to the end."""
        results: list[Any] = []
        errors: list[Exception] = []

        async def run() -> None:
            try:
                results.append(await fn())
            except Exception as exc:
                errors.append(exc)

        with anyio.fail_after(self.contract.bound):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
        if errors:
            raise errors[0]
        return results[0]

    async def settled(self) -> None:
        """Waits until every task is blocked and, through ``settle``, the remote state too."""
        await wait_all_tasks_blocked()
        if self.contract.settle is not None:
            await self.settle()
            await wait_all_tasks_blocked()  # what the answers woke has run

    async def settle(self) -> None:
        """Waits (bounded) for the contract's ``settle``, if it has one."""
        settle = self.contract.settle
        if settle is not None:
            with anyio.fail_after(self.contract.bound):
                await settle(self.service)

    async def is_free(self) -> bool:
        """Tells, from another task, whether a call could start now without waiting."""
        service = self.service
        # no wait for the other tasks here: what a service gives back "at once" must be
        # seen at once (a remote one's, once what it queued has been sent)
        await self.settle()

        async def probe() -> bool:
            if not self.contract.sheds:
                ready = await service.try_ready()
                service.drop_reservation()
                return ready
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.answer)
                try:
                    await service.call(self.contract.request)
                except Overloaded:
                    tg.cancel_scope.cancel()
                    return False
            return True

        free: bool = await self.in_other_task(probe)
        return free

    async def start_call(self, tg: anyio.abc.TaskGroup) -> anyio.CancelScope:
        """Starts a call in a task of its own; returns the scope that cancels it."""
        scope = anyio.CancelScope()

        async def run() -> None:
            # the checks fail calls on purpose: what they look at is the capacity
            with scope, contextlib.suppress(Exception):
                await self.service.call(self.contract.request)

        tg.start_soon(run)
        await self.settled()
        return scope


async def _ready_reserves_what_other_tasks_see_as_taken(run: _Run) -> None:
    await run.service.ready()
    assert not await run.is_free(), "after ready(), another task could still start a call"
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.answer)
        with anyio.fail_after(run.contract.bound):
            await run.service.call(run.contract.request)
    if run.contract.capacity_returns:
        assert await run.is_free(), "the capacity was not given back after the call returned"


async def _a_second_ready_keeps_one_reservation(run: _Run) -> None:
    with anyio.fail_after(run.contract.bound):
        await run.service.ready()
        await run.service.ready()  # must not wait: the task holds a reservation already
    assert await run.is_free(), "a second ready() took a second reservation"
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.answer)
        await run.service.call(run.contract.request)


async def _a_call_after_ready_does_not_wait(run: _Run) -> None:
    await run.service.ready()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.answer)
        with anyio.fail_after(run.contract.bound):
            await run.service.call(run.contract.request)


async def _an_unused_reservation_comes_back_when_its_task_ends(run: _Run) -> None:
    await run.in_other_task(run.service.ready)
    await wait_all_tasks_blocked()
    assert await run.is_free(), "the reservation of a task that ended was not given back"


async def _drop_reservation_gives_it_back_at_once(run: _Run) -> None:
    await run.service.ready()
    run.service.drop_reservation()
    assert await run.is_free(), "drop_reservation() did not give the reservation back"
    run.service.drop_reservation()  # nothing held: nothing happens
    assert await run.is_free()


async def _a_task_cancelled_in_ready_holds_nothing(run: _Run) -> None:
    await run.service.ready()  # this task takes the only capacity
    with anyio.fail_after(run.contract.bound):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.service.ready)
            await run.settled()  # it waits,
            tg.cancel_scope.cancel()  # and is cancelled waiting
    run.service.drop_reservation()
    assert await run.is_free(), "a task cancelled while waiting in ready() kept capacity"


async def _try_ready_does_not_wait_and_holds_nothing_when_it_fails(run: _Run) -> None:
    await run.service.ready()
    with anyio.fail_after(run.contract.bound):
        assert not await run.in_other_task(run.service.try_ready)
    run.service.drop_reservation()
    assert await run.is_free(), "a failed try_ready() kept capacity"


async def _hold_the_capacity(run: _Run, tg: anyio.abc.TaskGroup) -> anyio.CancelScope | None:
    """Takes the only capacity: a reservation of this task, or a call left running."""
    if run.contract.ready_reserves:
        await run.service.ready()
        return None
    scope = await run.start_call(tg)
    assert run.handle.pending == 1, "the first call did not reach the inner service"
    return scope


async def _give_the_capacity_back(run: _Run, holder: anyio.CancelScope | None) -> None:
    if holder is None:
        run.service.drop_reservation()
    else:
        await run.answer()


async def _a_call_alone_waits_for_capacity(run: _Run) -> None:
    async with anyio.create_task_group() as tg:
        holder = await _hold_the_capacity(run, tg)
        pending = run.handle.pending
        waiter = await run.start_call(tg)
        assert run.handle.pending == pending, "a call did not wait for capacity that was taken"
        if holder is not None and not run.contract.capacity_returns:
            await run.answer()  # the capacity is spent, not given back: the waiter goes on waiting
            await run.settled()
            assert run.handle.pending == 0
            waiter.cancel()
            return
        await _give_the_capacity_back(run, holder)
        await run.answer()  # the waiting call goes on now


async def _a_call_cancelled_while_waiting_holds_nothing(run: _Run) -> None:
    async with anyio.create_task_group() as tg:
        holder = await _hold_the_capacity(run, tg)
        waiter = await run.start_call(tg)
        waiter.cancel()
        await run.settled()
        if holder is not None and not run.contract.capacity_returns:
            tg.cancel_scope.cancel()  # spent capacity: nothing to see come back
            return
        await _give_the_capacity_back(run, holder)
    assert await run.is_free(), "a call cancelled while waiting kept capacity"


async def _a_running_call_gives_its_capacity_back_however_it_ends(run: _Run) -> None:
    for ending in ("raise", "cancel"):
        async with anyio.create_task_group() as tg:
            scope = await run.start_call(tg)
            with anyio.fail_after(run.contract.bound):
                _, responder = await run.handle.next_request()
            if ending == "raise":
                responder.fail(LookupError("the inner call failed"))
            else:
                scope.cancel()
        assert await run.is_free(), f"a call that ended by {ending} kept its capacity"


async def _a_call_refused_under_load_shedding_holds_nothing(run: _Run) -> None:
    async with anyio.create_task_group() as tg:
        holder = await _hold_the_capacity(run, tg)
        with anyio.fail_after(run.contract.bound):
            try:
                await run.in_other_task(lambda: run.service.call(run.contract.request))
            except Overloaded:
                pass
            else:  # pragma: no cover - only reached by a service that neither waits nor sheds
                raise AssertionError("a shedding service let a call through with no capacity")
        await _give_the_capacity_back(run, holder)
    assert await run.is_free(), "a call refused with Overloaded kept capacity"


@dataclass(frozen=True)
class _Check:
    run: Callable[[_Run], Awaitable[None]]
    ready: bool = False  # needs ready() to reserve
    returns: bool = False  # needs capacity that calls give back
    waits: bool = False  # needs calls that wait (not shed)
    sheds: bool = False  # needs calls that shed
    capacity: int = 1


_CHECKS: dict[str, _Check] = {
    check.run.__name__.lstrip("_"): check
    for check in (
        _Check(_ready_reserves_what_other_tasks_see_as_taken, ready=True),
        _Check(_a_second_ready_keeps_one_reservation, ready=True, capacity=2),
        _Check(_a_call_after_ready_does_not_wait, ready=True),
        _Check(_an_unused_reservation_comes_back_when_its_task_ends, ready=True),
        _Check(_drop_reservation_gives_it_back_at_once, ready=True),
        _Check(_a_task_cancelled_in_ready_holds_nothing, ready=True, waits=True),
        _Check(_try_ready_does_not_wait_and_holds_nothing_when_it_fails, ready=True, waits=True),
        _Check(_a_call_alone_waits_for_capacity, waits=True),
        _Check(_a_call_cancelled_while_waiting_holds_nothing, waits=True),
        _Check(_a_running_call_gives_its_capacity_back_however_it_ends, returns=True),
        _Check(_a_call_refused_under_load_shedding_holds_nothing, sheds=True),
    )
}


@final
@dataclass(frozen=True)
class ServiceContract:
    """How to build a service with capacity, and which of the contract's rules it keeps.

    Args:
        make: ``make(inner, capacity)`` returns the service under test around ``inner`` (a
            `MockService`), holding ``capacity`` units of capacity of its own.
        ready_reserves: ``ready()`` reserves the capacity (False: the capacity depends on the
            request, and only ``call()`` takes it).
        capacity_returns: A call gives its capacity back when it ends (False: it spends it).
        sheds: Where a call would wait, it raises `Overloaded` instead.
        request: The request the checks send; the inner mock answers it with itself.
        bound: Seconds a step that must not wait may take before the check fails: a virtual
            hour by default; a few seconds for a service checked on the real clock.
        settle: For a service whose capacity is kept elsewhere: ``await settle(service)``
            returns once the remote state has caught up with what the service did (queued
            work sent, requests under way answered). The suite awaits it before each look at
            the capacity and, once every task has blocked, at who waits.
    """

    make: Callable[[Service[Any, Any], int], Service[Any, Any]]
    ready_reserves: bool = True
    capacity_returns: bool = True
    sheds: bool = False
    request: Any = "request"
    bound: float = 3600.0
    settle: Callable[[Service[Any, Any]], Awaitable[None]] | None = None

    def checks(self) -> list[str]:
        """Returns the names of the checks that apply to this profile."""
        return [
            name
            for name, check in _CHECKS.items()
            if (self.ready_reserves or not check.ready)
            and (self.capacity_returns or not check.returns)
            and not (check.waits and self.sheds)
            and (self.sheds or not check.sheds)
        ]

    async def check(self, name: str) -> None:
        """Runs one check.

        Raises:
            AssertionError: The service broke the rule, with a message saying which.
            KeyError: No check has that name (see `checks`).
        """
        if name not in _CHECKS:
            raise KeyError(f"no contract check named {name!r}; the checks are {list(_CHECKS)}")
        check = _CHECKS[name]
        run = _Run(self, check.capacity)
        async with run.service:
            await check.run(run)

    async def check_all(self) -> None:
        """Runs every check that applies, one after the other."""
        for name in self.checks():
            await self.check(name)

    def __post_init__(self) -> None:
        check_callable("make", self.make, what="a function make(inner, capacity) -> Service")
        if self.sheds and not self.capacity_returns:
            raise ValueError("ServiceContract: sheds=True needs capacity that calls give back")
        if self.settle is not None:
            check_callable("settle", self.settle, what="a function settle(service) -> awaitable")
        check_positive_number("bound", self.bound)
