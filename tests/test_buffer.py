from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import override

from towerpy import (
    Buffer,
    BufferLayer,
    Overloaded,
    Service,
    ServiceBuilder,
    ServiceClosed,
    service_fn,
)
from towerpy.testing import InFlightProbe, mock_service, wait_all_tasks_blocked
from towerpy.util import MapRequestLayer

from .reference import ReferenceLimit, held, settle

if TYPE_CHECKING:
    from types import TracebackType

pytestmark = pytest.mark.anyio


class Outcomes:
    """Runs callers and records what each one got."""

    def __init__(self, svc: Service[Any, Any]) -> None:
        self.svc = svc
        self.results: dict[Any, Any] = {}
        self.errors: dict[Any, BaseException] = {}
        self.scopes: dict[Any, anyio.CancelScope] = {}

    async def caller(self, request: Any) -> None:
        with anyio.CancelScope() as scope:
            self.scopes[request] = scope
            try:
                self.results[request] = await self.svc(request)
            except Exception as exc:
                self.errors[request] = exc
        if scope.cancelled_caught:
            self.errors[request] = _Cancelled()

    async def start(self, tg: anyio.abc.TaskGroup, *requests: Any) -> None:
        """Starts one caller per request, in order: each is queued before the next starts."""
        for request in requests:
            tg.start_soon(self.caller, request)
            await wait_all_tasks_blocked()


class _Cancelled(Exception):
    pass


class Owner:
    """The task that holds a buffer's ``async with`` block open until ``stop`` is set."""

    def __init__(self, buffer: Service[Any, Any], scope: anyio.CancelScope, stop: anyio.Event):
        self.buffer = buffer
        self.scope = scope
        self.stop = stop

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with self.scope:
            async with self.buffer:
                task_status.started()
                await self.stop.wait()


async def test_requests_reach_the_inner_service_in_arrival_order() -> None:
    inner, handle = mock_service()
    handle.allow(0)  # the worker waits: the requests pile up in the queue
    buffer = BufferLayer(10).layer(inner)
    outcomes = Outcomes(buffer)
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, *"abcdef")
        assert handle.pending == 0
        handle.allow(None)
        for expected in "abcdef":
            request, responder = await handle.next_request()
            assert request == expected
            responder.send(expected.upper())
    assert outcomes.results == {r: r.upper() for r in "abcdef"}


async def test_each_caller_gets_the_answer_to_its_own_request() -> None:
    inner, handle = mock_service()
    buffer = BufferLayer(3).layer(inner)
    outcomes = Outcomes(buffer)
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, 1, 2, 3)
        received = [await handle.next_request() for _ in range(3)]
        for request, responder in reversed(received):  # answered in the opposite order
            responder.send(request * 10)
    assert outcomes.results == {1: 10, 2: 20, 3: 30}


async def test_an_error_of_the_inner_call_reaches_its_caller_unchanged() -> None:
    error = LookupError("not there")

    async def fails(_: object) -> None:
        raise error

    buffer = BufferLayer(1).layer(service_fn(fails))
    async with buffer:
        with pytest.raises(LookupError) as info:
            await buffer("x")
    assert info.value is error


async def test_with_bound_n_the_next_ready_waits_until_a_queued_request_is_sent_on() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    buffer = BufferLayer(2).layer(inner)
    third_ready = anyio.Event()

    async def reserve_then_call(name: str) -> None:
        await buffer.ready()
        if name == "c":
            third_ready.set()
        await buffer.call(name)

    async with buffer, anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(reserve_then_call, name)
            await wait_all_tasks_blocked()
        assert not third_ready.is_set()  # a and b fill both places in the queue
        assert not await buffer.try_ready()
        handle.allow(1)  # the worker sends a on: its place frees
        await wait_all_tasks_blocked()
        assert third_ready.is_set()
        handle.allow(None)
        for _ in "abc":
            _, responder = await handle.next_request()
            responder.send(None)


async def test_ready_reserves_one_place_and_the_call_uses_it() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    buffer = BufferLayer(1).layer(inner)
    async with buffer, anyio.create_task_group() as tg:
        await buffer.ready()
        await buffer.ready()  # still one reservation
        assert held(buffer)
        assert not await _other_task_try_ready(buffer)
        tg.start_soon(_answer_all, handle)
        handle.allow(None)
        assert await buffer.call("mine") == "mine!"
        assert not held(buffer)
        assert await _other_task_try_ready(buffer)
        tg.cancel_scope.cancel()


async def _other_task_try_ready(buffer: Service[Any, Any]) -> bool:
    result: list[bool] = []

    async def child() -> None:
        result.append(await buffer.try_ready())

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
    return result[0]


async def _answer_all(handle: Any) -> None:
    while True:
        request, responder = await handle.next_request()
        responder.send(f"{request}!")


async def test_a_reserved_place_is_given_back_when_its_task_ends_without_calling() -> None:
    buffer = BufferLayer(1).layer(service_fn(_echo))

    async def reserve_and_leave() -> None:
        await buffer.ready()

    async with buffer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reserve_and_leave)
        await settle()
        assert await buffer.try_ready()


async def _echo(x: Any) -> Any:
    return x


async def test_calls_run_concurrently_behind_the_buffer() -> None:
    async def slow(x: int) -> int:
        await anyio.sleep(1.0)
        return x

    probe = InFlightProbe(service_fn(slow))
    buffer = BufferLayer(5).layer(probe)
    outcomes = Outcomes(buffer)
    start = anyio.current_time()
    async with buffer, anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(outcomes.caller, n)
    assert probe.peak == 5
    assert anyio.current_time() - start == 1.0
    assert outcomes.results == {n: n for n in range(5)}


async def test_the_worker_reserves_the_inner_readiness_and_the_call_task_uses_it() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)
    buffer = BufferLayer(5).layer(limit)
    outcomes = Outcomes(buffer)
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, "a", "b")
        request, responder = await handle.next_request()
        assert request == "a"
        assert limit.in_use == 1
        assert handle.pending == 0  # b waits in the buffer for the limit's permit
        responder.send("A")
        request, responder = await handle.next_request()
        assert request == "b"
        responder.send("B")
    assert outcomes.results == {"a": "A", "b": "B"}
    await settle()
    assert limit.in_use == 0


async def test_a_caller_cancelled_while_queued_never_reaches_the_inner_service() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    buffer = BufferLayer(3).layer(inner)
    outcomes = Outcomes(buffer)
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, "a", "b", "c")
        outcomes.scopes["a"].cancel()  # a is first: the worker waits for readiness for it
        outcomes.scopes["c"].cancel()
        await wait_all_tasks_blocked()
        assert await buffer.try_ready()  # their places were given back
        handle.allow(None)
        request, responder = await handle.next_request()
        assert request == "b"
        responder.send("B")
        await wait_all_tasks_blocked()
        assert handle.pending == 0
        tg.start_soon(_answer_all, handle)
        assert await buffer.call("d") == "d!"  # uses the reservation made above
        tg.cancel_scope.cancel()
    assert set(outcomes.errors) == {"a", "c"}
    assert outcomes.results == {"b": "B"}


async def test_readiness_gained_for_requests_that_all_left_is_given_back() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)
    buffer = BufferLayer(2).layer(limit)
    outcomes = Outcomes(buffer)
    await limit.ready()  # the test task holds the limit's only permit
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, "a")  # the worker waits for the permit on a's behalf
        outcomes.scopes["a"].cancel()
        await wait_all_tasks_blocked()
        tg.start_soon(_answer_all, handle)
        await limit.call("test")  # gives the permit back: the worker gets it, for nobody
        await settle()
        assert limit.in_use == 0
        assert handle.pending == 0
        tg.cancel_scope.cancel()
    assert outcomes.errors.keys() == {"a"}


async def test_a_caller_cancelled_while_its_call_runs_cancels_that_call() -> None:
    inner, handle = mock_service()
    buffer = BufferLayer(2).layer(inner)
    outcomes = Outcomes(buffer)
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, "a", "b")
        _, responder_a = await handle.next_request()
        _, responder_b = await handle.next_request()
        outcomes.scopes["a"].cancel()
        await wait_all_tasks_blocked()
        assert responder_a.cancelled  # nothing runs on after its caller left
        assert not responder_b.cancelled
        responder_b.send("B")
    assert outcomes.results == {"b": "B"}
    assert outcomes.errors.keys() == {"a"}


request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
set_by_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "set_by_call", default=None
)


async def test_the_inner_call_sees_its_callers_context_variables_and_nobody_elses() -> None:
    seen: dict[str, tuple[str | None, str | None]] = {}

    async def work(name: str) -> str:
        seen[name] = (request_id.get(), set_by_call.get())
        set_by_call.set(name)  # stays in this call's caller
        await anyio.sleep(1)
        return name

    buffer = BufferLayer(4).layer(service_fn(work))

    async def caller(name: str) -> None:
        request_id.set(f"id-{name}")
        assert await buffer(name) == name
        assert await buffer(f"{name} again") == f"{name} again"

    request_id.set("the block's")
    async with buffer, anyio.create_task_group() as tg:
        for name in "ab":
            tg.start_soon(caller, name)
    assert seen == {
        "a": ("id-a", None),
        "b": ("id-b", None),
        "a again": ("id-a", "a"),  # its own caller's earlier call, as without a buffer
        "b again": ("id-b", "b"),
    }
    assert set_by_call.get() is None


async def test_no_task_is_started_per_call() -> None:
    inner, handle = mock_service()
    buffer = BufferLayer(8).layer(inner)
    outcomes = Outcomes(buffer)
    async with buffer, anyio.create_task_group() as tg:
        await wait_all_tasks_blocked()
        tasks_before = len(anyio.get_running_tasks())
        await outcomes.start(tg, *range(5))
        received = [await handle.next_request() for _ in range(5)]
        # the five callers, each running its own inner call, and nothing else
        assert len(anyio.get_running_tasks()) == tasks_before + 5
        for request, responder in received:
            responder.send(request)
    assert outcomes.results == {n: n for n in range(5)}


async def test_a_reservation_the_inner_call_leaves_unused_is_given_back_at_once() -> None:
    def check(request: int) -> int:
        if request < 0:
            raise ValueError("negative")
        return request

    limit = ReferenceLimit(service_fn(_echo), 1)
    # map_request fails before reaching the limit, whose permit the worker reserved for the call
    buffer = BufferLayer(2).layer(MapRequestLayer(check).layer(limit))
    async with buffer:
        with pytest.raises(ValueError, match="negative"):
            await buffer(-1)
        assert limit.in_use == 0  # given back before the caller's task ends
        with anyio.move_on_after(10) as scope:
            assert await buffer(1) == 1  # the worker can reserve the permit again
        assert not scope.cancelled_caught


async def test_a_reservation_the_caller_holds_on_the_inner_service_is_not_lost() -> None:
    limit = ReferenceLimit(service_fn(_echo), 2)
    buffer = BufferLayer(2).layer(limit)

    async def reserve_then_call_through_the_buffer() -> None:
        await limit.ready()  # the caller's own permit
        assert await buffer("x") == "x"  # the worker's permit is handed to the caller
        assert limit.in_use <= 1  # one of the two went back: a task holds one per service

    async with buffer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reserve_then_call_through_the_buffer)
        await settle(until=lambda: limit.in_use == 0)
        assert limit.in_use == 0


class FailingReady(Service[Any, Any]):
    def __init__(self) -> None:
        self.fail = anyio.Event()
        self.error = OSError("connection pool is gone")

    @override
    async def ready(self) -> None:
        await self.fail.wait()
        raise self.error

    @override
    async def call(self, request: Any) -> Any:
        return request


async def test_a_worker_failure_wakes_every_waiter_with_service_closed() -> None:
    inner = FailingReady()
    buffer = BufferLayer(2).layer(inner)
    outcomes = Outcomes(buffer)
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, "a", "b", "c")  # c waits for a place in the queue
        inner.fail.set()
    assert outcomes.errors.keys() == {"a", "b", "c"}
    for error in outcomes.errors.values():
        assert isinstance(error, ServiceClosed)
        assert error.__cause__ is inner.error
        assert "OSError: connection pool is gone" in str(error)


async def test_after_a_worker_failure_every_later_caller_gets_service_closed() -> None:
    inner = FailingReady()
    inner.fail.set()
    buffer = BufferLayer(2).layer(inner)
    async with buffer:
        with pytest.raises(ServiceClosed) as info:
            await buffer("late")
        assert info.value.__cause__ is inner.error
        with pytest.raises(ServiceClosed):
            await buffer.ready()
        with pytest.raises(ServiceClosed):
            await buffer.try_ready()
        assert not buffer.running


async def test_a_call_outside_async_with_says_to_enter_the_service_first() -> None:
    buffer = BufferLayer(1).layer(service_fn(_echo))
    with pytest.raises(ServiceClosed, match="enter it first with `async with service:`"):
        await buffer("x")
    with pytest.raises(ServiceClosed, match="async with"):
        await buffer.ready()
    with pytest.raises(ServiceClosed, match="async with"):
        await buffer.try_ready()
    async with buffer:
        assert await buffer("x") == "x"
    with pytest.raises(ServiceClosed, match="async with"):
        await buffer("after")


async def test_after_its_block_ended_a_buffer_says_it_was_closed() -> None:
    buffer = BufferLayer(1).layer(service_fn(_echo))
    async with buffer:
        assert await buffer("x") == "x"
    closed = "buffer closed: its `async with` block has ended"
    with pytest.raises(ServiceClosed, match=closed) as info:
        await buffer("after")
    assert "enter it first" not in str(info.value)
    with pytest.raises(ServiceClosed, match=closed):
        await buffer.ready()
    with pytest.raises(ServiceClosed, match=closed):
        await buffer.try_ready()
    assert not buffer.running
    async with buffer:  # it can be entered again: a new worker starts
        assert await buffer("again") == "again"


async def test_after_a_worker_failure_and_the_end_of_its_block_callers_still_learn_why() -> None:
    inner = FailingReady()
    inner.fail.set()
    buffer = BufferLayer(1).layer(inner)
    async with buffer:
        with pytest.raises(ServiceClosed):
            await buffer("fails")
    with pytest.raises(ServiceClosed, match="worker failed") as info:
        await buffer("later")
    assert info.value.__cause__ is inner.error


async def test_leaving_the_block_fails_queued_requests_and_lets_running_calls_finish() -> None:
    inner, handle = mock_service()
    handle.allow(1)
    buffer = BufferLayer(2).layer(inner)
    outcomes = Outcomes(buffer)
    stop = anyio.Event()
    exited = anyio.Event()

    async def owner(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with buffer:
            task_status.started()
            await stop.wait()
        exited.set()

    tasks_before = len(anyio.get_running_tasks())
    async with anyio.create_task_group() as tg:
        await tg.start(owner)
        await outcomes.start(tg, "running", "queued")
        _, responder = await handle.next_request()
        stop.set()
        await wait_all_tasks_blocked()
        assert not exited.is_set()  # the block waits for the running call
        assert isinstance(outcomes.errors["queued"], ServiceClosed)
        assert "before the request was sent on" in str(outcomes.errors["queued"])
        responder.send("done")
        await exited.wait()
    assert outcomes.results == {"running": "done"}
    assert len(anyio.get_running_tasks()) == tasks_before  # no task survives the block


async def test_leaving_the_block_fails_callers_waiting_for_a_place_in_the_queue() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    buffer = BufferLayer(1).layer(inner)
    outcomes = Outcomes(buffer)
    stop = anyio.Event()

    owner = Owner(buffer, anyio.CancelScope(), stop)

    async def waits_in_ready() -> None:
        try:
            await buffer.ready()
        except ServiceClosed as exc:
            outcomes.errors["ready"] = exc

    async with anyio.create_task_group() as tg:
        await tg.start(owner.run)
        await outcomes.start(tg, "queued", "waiting")
        tg.start_soon(waits_in_ready)
        await wait_all_tasks_blocked()
        stop.set()
    assert outcomes.errors.keys() == {"queued", "waiting", "ready"}
    assert all(isinstance(exc, ServiceClosed) for exc in outcomes.errors.values())
    assert handle.pending == 0


async def test_cancelling_the_exit_cancels_running_calls_and_their_callers_get_closed() -> None:
    inner, handle = mock_service()
    buffer = BufferLayer(2).layer(inner)
    outcomes = Outcomes(buffer)
    stop = anyio.Event()
    owner_scope = anyio.CancelScope()

    owner = Owner(buffer, owner_scope, stop)

    tasks_before = len(anyio.get_running_tasks())
    async with anyio.create_task_group() as tg:
        await tg.start(owner.run)
        await outcomes.start(tg, "a")
        _, responder = await handle.next_request()
        stop.set()
        await wait_all_tasks_blocked()
        owner_scope.cancel()  # the owner gives up waiting for the running call
    assert owner_scope.cancelled_caught
    assert responder.cancelled
    assert isinstance(outcomes.errors["a"], ServiceClosed)
    assert "cancelled while the request ran" in str(outcomes.errors["a"])
    assert len(anyio.get_running_tasks()) == tasks_before


async def test_cancelling_the_exit_waits_for_a_shielded_section_of_a_running_call() -> None:
    in_shield = anyio.Event()
    leave_shield = anyio.Event()
    steps: list[str] = []

    async def work(request: str) -> str:
        with anyio.CancelScope(shield=True):
            in_shield.set()
            await leave_shield.wait()
            steps.append("shielded part done")
        await anyio.sleep(10)  # cancelled here, once out of the shield
        steps.append("ran on")
        return request

    buffer = BufferLayer(1).layer(service_fn(work))
    outcomes = Outcomes(buffer)
    owner_scope = anyio.CancelScope()
    stop = anyio.Event()

    owner = Owner(buffer, owner_scope, stop)

    async with anyio.create_task_group() as tg:
        await tg.start(owner.run)
        tg.start_soon(outcomes.caller, "a")
        await in_shield.wait()
        stop.set()
        await wait_all_tasks_blocked()
        owner_scope.cancel()
        await wait_all_tasks_blocked()
        await anyio.sleep(0.1)  # the exit keeps trying while the call is shielded
        assert steps == []
        leave_shield.set()
    assert steps == ["shielded part done"]
    assert isinstance(outcomes.errors["a"], ServiceClosed)


async def test_a_caller_cancelled_as_the_exit_is_cancelled_is_cancelled_not_closed() -> None:
    inner, handle = mock_service()
    buffer = BufferLayer(1).layer(inner)
    outcomes = Outcomes(buffer)
    owner_scope = anyio.CancelScope()
    stop = anyio.Event()

    owner = Owner(buffer, owner_scope, stop)

    async with anyio.create_task_group() as tg:
        await tg.start(owner.run)
        await outcomes.start(tg, "a")
        _, responder = await handle.next_request()
        stop.set()
        await wait_all_tasks_blocked()
        owner_scope.cancel()
        # run again right after the owner, which cancels the call as its exit is cancelled:
        # the caller's own cancellation then lands before the caller has seen the buffer's
        await anyio.lowlevel.checkpoint()
        outcomes.scopes["a"].cancel()
    assert responder.cancelled
    assert isinstance(outcomes.errors["a"], _Cancelled)  # its own scope caught it


async def test_the_block_exception_propagates_unwrapped() -> None:
    buffer = BufferLayer(1).layer(service_fn(_echo))
    with pytest.raises(KeyError, match="body"):
        async with buffer:
            raise KeyError("body")
    assert not buffer.running


class Lifecycle(Service[Any, Any]):
    def __init__(self) -> None:
        self.events: list[str] = []

    @override
    async def call(self, request: Any) -> Any:
        return request

    @override
    async def __aenter__(self) -> Self:
        self.events.append("enter")
        return self

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.events.append("exit")


async def test_the_buffer_enters_and_exits_its_inner_service_and_can_run_again() -> None:
    inner = Lifecycle()
    buffer = BufferLayer(1).layer(inner)
    async with buffer as entered:
        assert entered is buffer
        assert buffer.running
        assert await buffer(1) == 1
    async with buffer:
        assert await buffer(2) == 2
    assert inner.events == ["enter", "exit", "enter", "exit"]


async def test_entering_a_running_buffer_again_is_refused() -> None:
    buffer = BufferLayer(1).layer(service_fn(_echo))
    async with buffer:
        with pytest.raises(RuntimeError, match="already running"):
            await buffer.__aenter__()
        assert await buffer("still") == "still"


async def test_a_reservation_from_an_earlier_run_is_not_used() -> None:
    inner, handle = mock_service()
    buffer = BufferLayer(1).layer(inner)
    async with buffer:
        await buffer.ready()
    async with buffer, anyio.create_task_group() as tg:
        assert await buffer.try_ready()  # the stale reservation is dropped, a new one made
        tg.start_soon(_answer_all, handle)
        assert await buffer.call("x") == "x!"
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("bound", [0, -1])
def test_a_bound_below_one_raises_value_error(bound: int) -> None:
    with pytest.raises(ValueError, match="bound"):
        BufferLayer(bound)
    with pytest.raises(ValueError, match="bound"):
        Buffer(service_fn(_echo), bound)


@pytest.mark.parametrize("bound", [1.5, "2", True])
def test_a_bound_that_is_not_an_int_raises_type_error(bound: Any) -> None:
    with pytest.raises(TypeError, match="bound"):
        BufferLayer(bound)


async def test_builder_buffer_is_the_buffer_layer() -> None:
    svc = ServiceBuilder().buffer(4).service(service_fn(_echo))
    assert isinstance(svc, Buffer)
    assert svc.bound == 4
    async with svc:
        assert await svc("x") == "x"


# --- random arrivals and cancellations ------------------------------------------------------


class Failure(Exception):
    pass


request_plan = st.tuples(
    st.integers(0, 4),  # arrival time
    st.none() | st.integers(0, 6),  # the caller gives up this long after calling, or never
    st.integers(0, 3),  # how long the inner call takes
    st.booleans(),  # whether the inner call fails
)


@settings(deadline=None, max_examples=120)
@given(
    bound=st.integers(1, 3),
    inner_limit=st.integers(1, 3),
    plans=st.lists(request_plan, min_size=1, max_size=8),
)
async def test_every_request_is_answered_once_or_dropped_because_its_caller_left(
    bound: int, inner_limit: int, plans: list[tuple[int, int | None, int, bool]]
) -> None:
    started: set[int] = set()
    running: set[int] = set()
    finished: dict[int, int] = {}
    outcomes: dict[int, tuple[str, Any]] = {}

    async def work(request: tuple[int, int, bool]) -> int:
        n, duration, fails = request
        assert n not in started, "a request reached the inner service twice"
        started.add(n)
        worker = buffer._worker
        assert worker is not None
        assert len(worker.queue) <= bound
        running.add(n)
        try:
            await anyio.sleep(duration)
        finally:
            running.discard(n)
        finished[n] = finished.get(n, 0) + 1
        if fails:
            raise Failure(n)
        return n * 10

    limit = ReferenceLimit(service_fn(work), inner_limit)
    buffer = BufferLayer(bound).layer(limit)

    async def caller(
        n: int, arrival: int, patience: int | None, duration: int, fails: bool
    ) -> None:
        await anyio.sleep(arrival)
        with anyio.CancelScope() as scope:
            if patience is not None:
                scope.deadline = anyio.current_time() + patience
            try:
                outcomes[n] = ("ok", await buffer((n, duration, fails)))
            except Failure as exc:
                outcomes[n] = ("failed", exc.args[0])
        if scope.cancelled_caught:
            assert n not in outcomes
            outcomes[n] = ("left", None)
            assert n not in running, "a call kept running after its caller left"
            assert anyio.current_time() == scope.deadline, "the caller could not leave in time"

    tasks_before = len(anyio.get_running_tasks())
    async with buffer:
        async with anyio.create_task_group() as tg:
            for n, plan in enumerate(plans):
                tg.start_soon(caller, n, *plan)
        worker = buffer._worker
        assert worker is not None
        assert worker.slots.available == bound
        assert not worker.queue
        assert not worker.running
    assert len(anyio.get_running_tasks()) == tasks_before
    await settle(until=lambda: limit.in_use == 0)
    assert limit.in_use == 0

    assert outcomes.keys() == set(range(len(plans)))
    for n, (kind, value) in outcomes.items():
        if kind == "ok":
            assert value == n * 10
            assert finished.get(n) == 1
        elif kind == "failed":
            assert value == n
            assert finished.get(n) == 1
        else:
            assert plans[n][1] is not None  # only callers that gave up are left without answer
            assert finished.get(n, 0) <= 1
    assert started <= outcomes.keys()
    assert not running


@pytest.mark.parametrize("bound", [10_000, 100])
async def test_ten_thousand_queued_requests_complete_in_arrival_order(bound: int) -> None:
    count = 10_000
    arrivals: list[int] = []
    served: list[int] = []
    inner, handle = mock_service()
    handle.allow(0)  # nothing is sent on until every request has arrived
    buffer = BufferLayer(bound).layer(inner)
    results: dict[int, Any] = {}
    scopes: dict[int, anyio.CancelScope] = {}

    async def caller(n: int) -> None:
        with anyio.CancelScope() as scope:
            scopes[n] = scope
            arrivals.append(n)  # the buffer queues it (or puts it in line) before it yields
            results[n] = await buffer(n)

    async def answer() -> None:
        while len(served) < len(arrivals) - len(left):
            request, responder = await handle.next_request()
            served.append(request)
            responder.send(request)

    async with buffer, anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(caller, n)
        await wait_all_tasks_blocked()
        assert len(arrivals) == count
        left = set(arrivals[::7])  # some callers give up, in the queue or in line for a place
        for n in left:
            scopes[n].cancel()
        await wait_all_tasks_blocked()
        handle.allow(None)
        await answer()
    assert served == [n for n in arrivals if n not in left]
    assert results == {n: n for n in served}


async def test_load_shed_in_front_refuses_at_once_when_the_queue_is_full() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    buffer = BufferLayer(1).layer(inner)
    svc = ServiceBuilder().load_shed().service(buffer)
    outcomes = Outcomes(svc)
    async with buffer, anyio.create_task_group() as tg:
        await outcomes.start(tg, "queued", "shed")
        assert isinstance(outcomes.errors["shed"], Overloaded)
        handle.allow(None)
        request, responder = await handle.next_request()
        assert request == "queued"
        responder.send("ok")
    assert outcomes.results == {"queued": "ok"}
