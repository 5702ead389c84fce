from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio
import pytest
import sniffio
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import (
    ConcurrencyLimit,
    Elapsed,
    ServiceBuilder,
    Timeout,
    TimeoutLayer,
    service_fn,
)
from towerpy._backend import _deadlines
from towerpy.testing import VirtualTimeEventLoop, mock_service, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def sleep_for(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


async def test_a_call_past_the_limit_raises_elapsed_naming_the_limit() -> None:
    inner, handle = mock_service()
    svc = Timeout(inner, 2)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:

        async def answer_late() -> None:
            _, responder = await handle.next_request()
            await anyio.sleep(5)
            assert responder.cancelled  # the inner call saw the cancellation and is gone

        tg.start_soon(answer_late)
        with pytest.raises(Elapsed, match=r"^request timed out after 2.0s$") as caught:
            await svc("slow")
        assert anyio.current_time() - start == 2
    assert caught.value.seconds == 2
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value.__cause__, anyio.get_cancelled_exc_class())


async def test_a_call_within_the_limit_returns_and_leaves_nothing_behind() -> None:
    svc = Timeout(service_fn(sleep_for), 2)
    start = anyio.current_time()
    assert await svc(1.5) == 1.5
    await anyio.sleep(10)  # the old deadline passes: nothing is cancelled
    assert anyio.current_time() - start == 11.5
    assert await svc(0) == 0


async def test_an_outer_scope_cancelled_while_the_timeout_is_pending_is_cancellation() -> None:
    svc = Timeout(service_fn(sleep_for), 5)
    start = anyio.current_time()
    with anyio.move_on_after(1) as scope:
        await svc(10)
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 1
    assert await svc(1) == 1  # the task is not left cancelled


async def test_an_outer_scope_cancelled_at_the_same_instant_wins_over_the_timeout() -> None:
    svc = Timeout(service_fn(sleep_for), 2)
    with anyio.move_on_after(2) as scope:
        await svc(10)
    assert scope.cancelled_caught  # cancellation, not Elapsed
    assert await svc(1) == 1


async def test_a_timeout_and_an_outer_cancellation_both_pending_is_cancellation() -> None:
    async def shielded_then_slow(_: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(3)  # the limit passes at 0.5, the outer scope is cancelled at 1
        await anyio.sleep(100)

    svc = Timeout(service_fn(shielded_then_slow), 0.5)
    scope = anyio.CancelScope()

    async def canceller() -> None:
        await anyio.sleep(1)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(canceller)
        with scope:
            await svc(None)
    assert scope.cancelled_caught  # both were pending when the shield ended: not Elapsed


async def test_an_outer_scope_due_just_after_the_limit_lets_elapsed_through() -> None:
    svc = Timeout(service_fn(sleep_for), 2)
    start = anyio.current_time()
    with anyio.move_on_after(2 + 1e-6) as scope, pytest.raises(Elapsed):
        await svc(10)
    assert not scope.cancel_called
    assert anyio.current_time() - start == 2


async def test_nested_timeouts_the_one_whose_limit_passed_raises() -> None:
    hang = Timeout(service_fn(sleep_for), 1)

    async def recover(_: object) -> str:
        try:
            await hang(10)
        except Elapsed as exc:
            return f"inner gave up after {exc.seconds}"
        return "unreachable"

    outer = Timeout(service_fn(recover), 5)
    start = anyio.current_time()
    assert await outer(None) == "inner gave up after 1.0"
    assert anyio.current_time() - start == 1


async def test_nested_timeouts_passing_at_once_raise_the_outer_one() -> None:
    inner = Timeout(service_fn(sleep_for), 2)

    async def wait_then_call_inner(_: object) -> float:
        await anyio.sleep(1)
        return await inner(10)  # its deadline, 1 + 2, is the outer one's: 0 + 3

    outer = Timeout(service_fn(wait_then_call_inner), 3)
    with pytest.raises(Elapsed) as caught:
        await outer(None)
    assert caught.value.seconds == 3


async def test_a_timeout_in_a_task_group_fails_the_group_and_cancels_the_rest() -> None:
    svc = Timeout(service_fn(sleep_for), 1)
    finished: list[float] = []
    cancelled: list[float] = []

    async def run(delay: float, seconds: float) -> None:
        await anyio.sleep(delay)
        try:
            finished.append(await svc(seconds))
        except anyio.get_cancelled_exc_class():
            cancelled.append(seconds)
            raise

    async def run_all() -> None:
        async with anyio.create_task_group() as tg:
            for delay, seconds in ((0, 0.5), (0, 2), (0.5, 3)):
                tg.start_soon(run, delay, seconds)

    with pytest.raises(ExceptionGroup) as caught:
        await run_all()
    assert caught.group_contains(Elapsed)
    assert len(caught.value.exceptions) == 1
    assert finished == [0.5]
    assert cancelled == [3]


async def test_the_inner_call_and_its_child_tasks_are_really_cancelled() -> None:
    observed: list[str] = []

    async def fan_out(_: object) -> None:
        async def child(name: str) -> None:
            try:
                await anyio.sleep_forever()
            finally:
                observed.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(child, "a")
            tg.start_soon(child, "b")

    svc = Timeout(service_fn(fan_out), 1)
    with pytest.raises(Elapsed):
        await svc(None)
    assert sorted(observed) == ["a", "b"]
    await anyio.sleep(5)
    assert sorted(observed) == ["a", "b"]  # nothing kept running


async def test_a_shielded_section_of_the_call_finishes_before_elapsed() -> None:
    steps: list[str] = []

    async def careful(_: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(3)
            steps.append("shielded part done")
        await anyio.sleep(100)
        steps.append("unreachable")

    svc = Timeout(service_fn(careful), 1)
    start = anyio.current_time()
    with pytest.raises(Elapsed):
        await svc(None)
    assert steps == ["shielded part done"]
    # trio cancels as the shield ends; asyncio looks again within 10 ms of it
    assert 3 <= anyio.current_time() - start <= 3.01


async def test_a_timeout_inside_a_shielded_scope_still_fires() -> None:
    svc = Timeout(service_fn(sleep_for), 1)
    with anyio.CancelScope(shield=True), pytest.raises(Elapsed):
        await svc(10)


async def test_a_call_that_swallows_the_cancellation_returns_its_result() -> None:
    async def stubborn(_: object) -> str:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            return "swallowed"
        return "slept"

    svc = Timeout(service_fn(stubborn), 1)
    assert await svc(None) == "swallowed"
    start = anyio.current_time()
    await anyio.sleep(1)  # the task is not left cancelled
    assert anyio.current_time() - start == 1


async def test_a_call_that_turns_the_cancellation_into_an_error_raises_that_error() -> None:
    async def converts(_: object) -> None:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class() as exc:
            raise LookupError("gave up") from exc

    svc = Timeout(service_fn(converts), 1)
    with pytest.raises(LookupError, match="gave up"):
        await svc(None)
    start = anyio.current_time()
    await anyio.sleep(1)  # the task is not left cancelled
    assert anyio.current_time() - start == 1


async def test_call_alone_counts_the_wait_for_inner_capacity_toward_the_limit() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    svc = Timeout(limit, 2)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limit, "holder")
        _, holder = await handle.next_request()
        with pytest.raises(Elapsed):
            await svc.call("waits for the permit")
        assert anyio.current_time() - start == 2
        assert limit.statistics().waiting == 0
        holder.send(None)


async def test_call_alone_counts_the_wait_for_inner_readiness_toward_the_limit() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    svc = Timeout(inner, 1)
    start = anyio.current_time()
    with pytest.raises(Elapsed):
        await svc.call("never ready")
    assert anyio.current_time() - start == 1
    assert handle.pending == 0  # it never reached the inner service
    handle.allow(1)
    assert await svc.try_ready()  # the allowance it waited for was not taken


async def test_calling_it_waits_for_inner_readiness_before_the_limit_starts() -> None:
    inner, handle = mock_service()
    handle.allow(0)
    svc = Timeout(inner, 1)
    start = anyio.current_time()

    async def allow_late_then_answer() -> None:
        await anyio.sleep(5)  # not ready for five times the limit
        handle.allow(1)
        _, responder = await handle.next_request()
        await anyio.sleep(0.5)  # the call itself is within the limit
        responder.send("answered")

    async with anyio.create_task_group() as tg:
        tg.start_soon(allow_late_then_answer)
        assert await svc("request") == "answered"
    assert anyio.current_time() - start == 5.5
    handle.allow(None)
    with pytest.raises(Elapsed):  # once ready, the call is bounded
        await svc("no answer")
    assert anyio.current_time() - start == 6.5


async def test_calling_it_waits_for_a_permit_below_it_outside_the_limit() -> None:
    inner, handle = mock_service()
    limit = ConcurrencyLimit(inner, 1)
    svc = Timeout(limit, 1)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limit, "holder")
        _, holder = await handle.next_request()

        async def release_late_then_answer() -> None:
            await anyio.sleep(3)  # the permit is held for three times the limit
            holder.send(None)
            _, responder = await handle.next_request()
            responder.send("answered")

        tg.start_soon(release_late_then_answer)
        assert await svc("waits for the permit") == "answered"
    assert anyio.current_time() - start == 3


def _outcome(scope: anyio.CancelScope, error: BaseException | None) -> str:
    if error is not None:
        return type(error).__name__
    return "cancelled" if scope.cancelled_caught else "returned"


async def test_outer_scopes_due_with_the_limits_of_concurrent_calls_all_win() -> None:
    # one timer serves every call: it must not expire a call whose own outer scope is due too
    svc = Timeout(service_fn(sleep_for), 0.05)
    outcomes: list[str] = []

    async def client() -> None:
        error: Elapsed | None = None
        with anyio.move_on_after(0.05) as scope:  # due at the very instant of the limit
            try:
                await svc(10)
            except Elapsed as exc:
                error = exc
        outcomes.append(_outcome(scope, error))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(client)
    assert outcomes == ["cancelled"] * 10


def _busy_for(seconds: float) -> None:
    """Blocks the event loop: the clock moves on while nothing else runs (a slow callback)."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.current_clock().jump(seconds)  # type: ignore[attr-defined]
    else:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        loop.jump(seconds)


async def test_outer_deadlines_just_before_the_limits_win_when_the_loop_runs_late() -> None:
    # each call's outer scope is due a microsecond before its limit, and the calls start two
    # microseconds apart; the loop then runs late, so that every deadline is past at once
    svc = Timeout(service_fn(sleep_for), 0.05)
    start = anyio.current_time()
    outcomes: list[str] = []

    async def client(i: int) -> None:
        await anyio.sleep_until(start + i * 2e-6)
        error: Elapsed | None = None
        with anyio.move_on_after(0.05 - 1e-6) as scope:
            try:
                await svc(10)
            except Elapsed as exc:
                error = exc
        outcomes.append(_outcome(scope, error))

    async def run_late() -> None:
        await anyio.sleep(0.04)
        _busy_for(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_late)
        for i in range(10):
            tg.start_soon(client, i)
    assert outcomes == ["cancelled"] * 10


async def test_nested_timeouts_due_together_when_the_loop_runs_late_raise_the_outer_one() -> None:
    inner = Timeout(service_fn(sleep_for), 2)
    caught: list[float | None] = []

    async def call_inner_later(delay: float) -> float:
        await anyio.sleep(delay)
        try:
            return await inner(10)  # its limit passes with the outer one's: 1 + 2 = 0 + 3
        except Elapsed as exc:
            caught.append(exc.seconds)
            return -1

    outer = Timeout(service_fn(call_inner_later), 3)
    start = anyio.current_time()

    async def other_call() -> None:  # an older outer call, due just before ours
        with pytest.raises(Elapsed):
            await outer(100 - 1e-6)

    async def run_late() -> None:
        await anyio.sleep(2.5)
        _busy_for(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_call)
        tg.start_soon(run_late)
        await anyio.sleep_until(start + 1e-6)
        with pytest.raises(Elapsed) as raised:
            await outer(1)
    assert raised.value.seconds == 3
    assert caught == []


@pytest.mark.real_clock
async def test_outer_deadlines_just_before_the_limits_win_on_the_real_clock() -> None:
    # The reported case: 10 concurrent move_on_after(0.05) around a 0.05 s timeout, the outer
    # deadline microseconds earlier (read first); 45 of 50 came out as Elapsed on asyncio. The
    # outcome does not depend on how late the loop runs, so no tolerance is needed; it takes
    # about 5 x 0.05 s.
    svc = TimeoutLayer(0.05).layer(service_fn(sleep_for))
    outcomes: list[str] = []

    async def client() -> None:
        error: Elapsed | None = None
        with anyio.move_on_after(0.05) as scope:
            try:
                await svc(10)
            except Elapsed as exc:
                error = exc
        outcomes.append(_outcome(scope, error))

    for _ in range(5):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(client)
    assert outcomes == ["cancelled"] * 50


async def test_an_outer_scope_with_a_zero_deadline_wins_over_a_zero_limit() -> None:
    svc = Timeout(service_fn(sleep_for), 0)
    with anyio.move_on_after(0) as scope:
        await svc(1)
    assert scope.cancelled_caught


async def test_a_zero_limit_gives_identical_calls_the_same_outcome() -> None:
    async def suspends(_: object) -> str:
        await anyio.lowlevel.checkpoint()
        return "returned"

    async def completes_at_once(_: object) -> str:
        return "returned"

    svc: Timeout[object, str] = Timeout(service_fn(suspends), 0)
    at_once: Timeout[object, str] = Timeout(service_fn(completes_at_once), 0)
    start = anyio.current_time()
    outcomes: list[str] = []
    for _ in range(3):
        for service in (svc, svc, at_once, at_once, svc):
            try:
                outcomes.append(await service(None))
            except Elapsed:
                outcomes.append("elapsed")
    # as trio's and anyio's fail_after(0): any suspension fails, no suspension succeeds
    assert outcomes == ["elapsed", "elapsed", "returned", "returned", "elapsed"] * 3
    assert anyio.current_time() == start


async def test_no_limit_and_a_zero_limit() -> None:
    assert await Timeout(service_fn(sleep_for), math.inf)(1000) == 1000
    start = anyio.current_time()
    with pytest.raises(Elapsed, match=r"after 0.0s"):
        await Timeout(service_fn(sleep_for), 0)(1)
    assert anyio.current_time() == start


@settings(deadline=None, max_examples=50)
@given(
    calls=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), min_size=1, max_size=25),
)
async def test_each_of_many_concurrent_calls_times_out_exactly_at_its_own_deadline(
    calls: list[tuple[int, int]],
) -> None:
    seconds = 2.5
    svc = Timeout(service_fn(sleep_for), seconds)
    start = anyio.current_time()
    outcomes: dict[int, tuple[str, float]] = {}

    async def client(i: int, arrival: int, latency: int) -> None:
        await anyio.sleep_until(start + arrival)
        try:
            await svc(latency)
            outcomes[i] = ("ok", anyio.current_time() - start)
        except Elapsed:
            outcomes[i] = ("elapsed", anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        for i, (arrival, latency) in enumerate(calls):
            tg.start_soon(client, i, arrival, latency)
    for i, (arrival, latency) in enumerate(calls):
        if latency < seconds:
            assert outcomes[i] == ("ok", arrival + latency)
        else:
            assert outcomes[i] == ("elapsed", arrival + seconds)
    assert not _deadlines._innermost  # asyncio: no finished call is still linked to its task


async def test_many_short_calls_behind_a_long_one_keep_the_deadline_queue_small() -> None:
    svc = Timeout(service_fn(sleep_for), 100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc, 50)
        await wait_all_tasks_blocked()
        for _ in range(1000):
            await svc(0)
        queue = svc._deadlines.queue
        if queue is not None:  # asyncio only: trio has deadlines of its own
            assert len(queue._entries) <= 2 * 1 + 64 + 1


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan])
def test_a_negative_or_nan_limit_is_refused_naming_the_argument(bad: float) -> None:
    for make in (
        lambda: TimeoutLayer(bad),
        lambda: Timeout(service_fn(sleep_for), bad),
        lambda: ServiceBuilder().timeout(bad),
    ):
        with pytest.raises(ValueError, match=r"^seconds must be a number of seconds >= 0"):
            make()


def test_a_limit_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(TypeError, match="seconds must be a number of seconds >= 0, got str"):
        TimeoutLayer("5")  # type: ignore[arg-type]


async def test_the_builder_shorthand_is_the_layer() -> None:
    builder = ServiceBuilder().timeout(0.5)
    (layer,) = builder.layers
    assert isinstance(layer, TimeoutLayer)
    assert layer.seconds == 0.5
    svc = builder.service(service_fn(sleep_for))
    assert isinstance(svc, Timeout)
    with pytest.raises(Elapsed, match=r"after 0.5s"):
        await svc(1)


def test_one_timeout_serves_one_event_loop_after_another() -> None:
    svc: Timeout[Any, Any] = Timeout(service_fn(sleep_for), 1)

    async def main() -> tuple[float, float]:
        with pytest.raises(Elapsed):
            await svc(5)
        return await svc(0.5), asyncio.get_running_loop().time()

    for _ in range(2):
        with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
            assert runner.run(main()) == (0.5, 1.5)


def test_asyncio_timeouts_just_before_the_limits_win_when_the_loop_runs_late() -> None:
    # asyncio.timeout is no anyio scope, so only the order of the loop's timers lets it win: the
    # shared timer must not expire a call before the loop has run the timers due earlier
    svc: Timeout[float, float] = Timeout(service_fn(sleep_for), 0.05)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        start = loop.time()
        outcomes: list[str] = []

        async def client(i: int) -> None:
            await asyncio.sleep(i * 2e-6)
            try:
                async with asyncio.timeout(0.05 - 1e-6):
                    await svc(10)
            except TimeoutError as exc:
                outcomes.append(type(exc).__name__)

        # a slow callback that the loop runs in the same pass as the timer of the first limit,
        # just before it: every later deadline is past when that timer looks at the clock
        loop.call_at(start + 0.05 - 0.5e-9, loop.jump, 0.02)
        async with asyncio.TaskGroup() as tg:
            for i in range(10):
                tg.create_task(client(i))
        assert loop.time() - start == pytest.approx(0.07)
        return outcomes

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        assert runner.run(main()) == ["TimeoutError"] * 10
