"""ParallelToolRouter: bounded, ordered batches under each join policy, barriers, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import Elapsed, Service, service_fn
from towerpy._backend import current_task, in_trio
from towerpy.testing import InFlightProbe, wait_all_tasks_blocked
from towerpy.tools import (
    JoinPolicy,
    ParallelToolRouter,
    ToolInvocation,
    ToolOutput,
    ToolRouter,
    describe_failure,
    tool,
)

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


class Recorder(Service[ToolInvocation, ToolOutput]):
    """A router whose invocations sleep ``delay`` and then fail or return; it records it all."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.spans: dict[str, tuple[float, float]] = {}
        self.tasks: set[int] = set()
        self.errors: dict[str, Exception] = {}

    async def call(self, request: ToolInvocation) -> ToolOutput:
        self.tasks.add(id(current_task()))
        self.started.append(request.id)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        start = anyio.current_time()
        try:
            await anyio.sleep(request.arguments.get("delay", 0))
            if request.arguments.get("fail"):
                error = Boom(request.id)
                self.errors[request.id] = error
                raise error
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(request.id)
            raise
        finally:
            self.in_flight -= 1
            self.spans[request.id] = (start, anyio.current_time())
        self.finished.append(request.id)
        return ToolOutput(id=request.id, name=request.name, content=request.id.upper())


def inv(id: str, delay: float = 0, fail: bool = False, name: str = "work") -> ToolInvocation:
    return ToolInvocation(id=id, name=name, arguments={"delay": delay, "fail": fail})


def live_tasks() -> int:
    if in_trio():
        import trio

        def count(task: Any) -> int:
            return 1 + sum(
                count(child) for nursery in task.child_nurseries for child in nursery.child_tasks
            )

        return count(trio.lowlevel.current_root_task())
    return len(asyncio.all_tasks())


# --- ordering and bounds -----------------------------------------------------------------------


async def test_outputs_come_back_in_request_order_whatever_order_they_finish_in() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=3)
    outputs = await parallel([inv("a", 3), inv("b", 1), inv("c", 2)])
    assert [o.id for o in outputs] == ["a", "b", "c"]
    assert [o.content for o in outputs] == ["A", "B", "C"]
    assert router.finished == ["b", "c", "a"]
    assert anyio.current_time() == 3


@settings(deadline=None, max_examples=60)
@given(
    delays=st.lists(st.integers(0, 5), min_size=0, max_size=25),
    limit=st.integers(1, 8),
)
async def test_order_is_kept_and_the_limit_holds_under_random_latencies(
    delays: list[int], limit: int
) -> None:
    router = Recorder()
    invocations = [inv(f"i{n}", delay) for n, delay in enumerate(delays)]
    outputs = await ParallelToolRouter(router, limit=limit)(invocations)
    assert [o.id for o in outputs] == [i.id for i in invocations]
    assert router.peak <= limit
    if delays and min(delays) > 0:  # every slot fills at once
        assert router.peak == min(limit, len(delays))
    assert router.in_flight == 0


async def test_at_most_limit_run_at_once_and_each_starts_as_soon_as_a_slot_frees() -> None:
    router = Recorder()
    await ParallelToolRouter(router, limit=2)([inv("a", 1), inv("b", 3), inv("c", 1), inv("d", 1)])
    assert router.peak == 2
    assert router.spans == {"a": (0, 1), "b": (0, 3), "c": (1, 2), "d": (2, 3)}


async def test_a_batch_of_100_000_runs_in_at_most_limit_tasks() -> None:
    limit = 100
    baseline = live_tasks()
    peak_tasks = 0

    async def call(request: ToolInvocation) -> ToolOutput:
        nonlocal peak_tasks
        if int(request.id) % 64 == 0:  # counting tasks is slow: sample, it is steady anyway
            peak_tasks = max(peak_tasks, live_tasks())
        await anyio.sleep(0.001)
        return ToolOutput(id=request.id, name=request.name, content=None)

    router = InFlightProbe(service_fn(call))
    invocations = [ToolInvocation(id=str(n), name="t") for n in range(100_000)]
    outputs = await ParallelToolRouter(router, limit=limit)(invocations)
    assert len(outputs) == 100_000
    assert outputs[-1].id == "99999"
    assert router.peak == limit
    assert peak_tasks <= baseline + limit
    assert anyio.current_time() == pytest.approx(1.0)  # 1000 rounds of 1 ms


async def test_the_workers_are_the_only_tasks_and_there_are_at_most_limit() -> None:
    router = Recorder()
    await ParallelToolRouter(router, limit=4)([inv(str(n), n % 3) for n in range(40)])
    assert len(router.tasks) == 4


async def test_an_empty_batch_returns_an_empty_list() -> None:
    assert await ParallelToolRouter(Recorder())([]) == []


async def test_a_single_invocation_runs_in_the_callers_task() -> None:
    router = Recorder()
    await ParallelToolRouter(router)([inv("a")])
    assert router.tasks == {id(current_task())}


# --- JOIN_ALL ----------------------------------------------------------------------------------


async def test_join_all_runs_everything_then_raises_the_earliest_failure_in_request_order() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=5, policy=JoinPolicy.JOIN_ALL)
    batch = [inv("a", 1), inv("b", 2, fail=True), inv("c", 4), inv("d", 1, fail=True)]
    with pytest.raises(Boom) as caught:
        await parallel(batch)
    assert caught.value is router.errors["b"]  # d failed first, but b comes first in the request
    assert sorted(router.finished) == ["a", "c"]
    assert router.cancelled == []
    assert anyio.current_time() == 4


async def test_join_all_returns_every_output_when_nothing_fails() -> None:
    outputs = await ParallelToolRouter(Recorder(), policy=JoinPolicy.JOIN_ALL)([inv("a"), inv("b")])
    assert [o.content for o in outputs] == ["A", "B"]


async def test_join_all_raises_the_tools_exception_unwrapped() -> None:
    @tool
    async def broken(x: int) -> int:
        """Broken."""
        raise KeyError(x)

    parallel = ParallelToolRouter(ToolRouter([broken]), policy=JoinPolicy.JOIN_ALL)
    with pytest.raises(KeyError) as caught:
        await parallel([ToolInvocation(id="1", name="broken", arguments={"x": 7})] * 3)
    assert type(caught.value) is KeyError


# --- FAIL_FAST ---------------------------------------------------------------------------------


async def test_fail_fast_cancels_the_rest_at_the_first_failure_and_raises_it() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=3, policy=JoinPolicy.FAIL_FAST)
    batch = [inv("a", 5), inv("b", 3, fail=True), inv("c", 1, fail=True), inv("d", 1), inv("e")]
    with pytest.raises(Boom) as caught:
        await parallel(batch)
    assert caught.value is router.errors["c"]  # the first in time
    assert anyio.current_time() == 1
    assert sorted(router.cancelled) == ["a", "b"]  # running siblings saw cancellation
    assert sorted(router.started) == ["a", "b", "c"]  # waiting invocations never start
    started = list(router.started)
    await anyio.sleep(100)
    await wait_all_tasks_blocked()
    assert router.started == started  # nothing started after call() returned
    assert router.finished == []
    assert router.in_flight == 0


async def test_fail_fast_does_not_run_invocations_after_a_barrier() -> None:
    router = Recorder()

    def sequential(name: str) -> bool:
        return name == "seq"

    parallel = ParallelToolRouter(router, policy=JoinPolicy.FAIL_FAST, sequential=sequential)
    with pytest.raises(Boom):
        await parallel([inv("a", 1, fail=True), inv("s", name="seq"), inv("b")])
    assert router.started == ["a"]


async def test_fail_fast_with_one_invocation_raises_its_failure() -> None:
    router = Recorder()
    with pytest.raises(Boom):
        await ParallelToolRouter(router, policy=JoinPolicy.FAIL_FAST)([inv("a", fail=True)])


# --- ISOLATE -----------------------------------------------------------------------------------


async def test_isolate_turns_failures_into_error_outputs_and_leaves_the_rest_alone() -> None:
    router = Recorder()
    outputs = await ParallelToolRouter(router, limit=2)(
        [inv("a", 1), inv("b", 1, fail=True), inv("c", 2)]
    )
    assert outputs[0] == ToolOutput(id="a", name="work", content="A")
    assert outputs[1] == ToolOutput(
        id="b", name="work", content="tool 'work' failed: Boom: b", is_error=True
    )
    assert outputs[2].content == "C"
    assert router.cancelled == []


async def test_isolate_reports_unknown_tools_and_malformed_arguments_to_the_model() -> None:
    @tool
    async def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    parallel = ParallelToolRouter(ToolRouter([add]))
    outputs = await parallel(
        [
            ToolInvocation(id="1", name="add", raw_arguments='{"a": 1,'),
            ToolInvocation(id="2", name="mul", arguments={"a": 1}),
            ToolInvocation(id="3", name="add", arguments={"a": "one", "b": 2}),
            ToolInvocation(id="4", name="add", arguments={"a": 1, "b": 2}),
        ]
    )
    assert [o.is_error for o in outputs] == [True, True, True, False]
    assert outputs[0].content.startswith("arguments for tool 'add' are not a JSON object")
    assert outputs[1].content == "no tool named 'mul'; known tools: 'add'"
    assert "a: input should be a valid integer" in outputs[2].content
    assert outputs[3].content == 3


async def test_a_custom_describe_shapes_error_messages() -> None:
    parallel = ParallelToolRouter(Recorder(), describe=lambda i, e: f"{i.id} broke")
    [output] = await parallel([inv("x", fail=True)])
    assert output.content == "x broke"


def test_error_messages_are_short() -> None:
    message = describe_failure(inv("x"), Boom("y" * 10_000))
    assert len(message) <= 1000
    assert message.startswith("tool 'work' failed: Boom: yyy")
    assert describe_failure(inv("x"), Boom()) == "tool 'work' failed: Boom"
    assert describe_failure(inv("x"), TimeoutError()) == "tool 'work' timed out"


# --- timeouts ----------------------------------------------------------------------------------


async def test_tool_timeout_under_isolate_says_it_timed_out_after_n_seconds() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, tool_timeout=2.5)
    outputs = await parallel([inv("slow", 10), inv("fast", 1)])
    assert outputs[0] == ToolOutput(
        id="slow", name="work", content="tool 'work' timed out after 2.5 seconds", is_error=True
    )
    assert outputs[1].content == "FAST"
    assert router.cancelled == ["slow"]
    assert anyio.current_time() == 2.5


@pytest.mark.parametrize("policy", [JoinPolicy.JOIN_ALL, JoinPolicy.FAIL_FAST])
async def test_a_timed_out_invocation_fails_with_elapsed(policy: JoinPolicy) -> None:
    parallel = ParallelToolRouter(Recorder(), policy=policy, tool_timeout=1)
    with pytest.raises(Elapsed) as caught:
        await parallel([inv("slow", 10), inv("fast")])
    assert caught.value.seconds == 1
    assert "timed out after 1s" in str(caught.value)


async def test_a_timed_out_sync_tool_returns_promptly() -> None:
    import threading

    gate = threading.Event()

    @tool
    def stuck(x: int) -> int:
        """Stuck."""
        gate.wait(10)
        return x

    parallel = ParallelToolRouter(ToolRouter([stuck]), tool_timeout=0.5)
    try:
        [output] = await parallel([ToolInvocation(id="1", name="stuck", arguments={"x": 1})])
    finally:
        gate.set()
    assert output.content == "tool 'stuck' timed out after 0.5 seconds"
    assert anyio.current_time() == 0.5


# --- sequential tools --------------------------------------------------------------------------


def is_seq(name: str) -> bool:
    return name == "seq"


async def test_a_sequential_tool_runs_alone_at_its_position() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=5, sequential=is_seq)
    batch = [inv("a", 1), inv("b", 2), inv("s", 1, name="seq"), inv("c", 1), inv("d", 3)]
    outputs = await parallel(batch)
    assert [o.id for o in outputs] == ["a", "b", "s", "c", "d"]
    assert router.spans == {"a": (0, 1), "b": (0, 2), "s": (2, 3), "c": (3, 4), "d": (3, 6)}


async def test_a_catalog_tells_which_tools_are_sequential_through_layers_around_the_router() -> (
    None
):
    spans: dict[str, tuple[float, float]] = {}

    @tool
    async def work(label: str) -> None:
        """Work."""
        start = anyio.current_time()
        await anyio.sleep(1)
        spans[label] = (start, anyio.current_time())

    @tool(sequential=True)
    async def commit(label: str) -> None:
        """Commit."""
        start = anyio.current_time()
        await anyio.sleep(1)
        spans[label] = (start, anyio.current_time())

    tools = ToolRouter([work, commit])
    router = InFlightProbe(tools)
    batch = [
        ToolInvocation(id="1", name="work", arguments={"label": "w1"}),
        ToolInvocation(id="2", name="commit", arguments={"label": "c1"}),
        ToolInvocation(id="3", name="commit", arguments={"label": "c2"}),
        ToolInvocation(id="4", name="work", arguments={"label": "w2"}),
        ToolInvocation(id="5", name="work", arguments={"label": "w3"}),
    ]
    await ParallelToolRouter(router, limit=5, catalog=tools)(batch)
    assert spans == {"w1": (0, 1), "c1": (1, 2), "c2": (2, 3), "w2": (3, 4), "w3": (3, 4)}
    assert router.peak == 2


@settings(deadline=None, max_examples=50)
@given(
    plan=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=15),
    limit=st.integers(1, 4),
)
async def test_barriers_hold_for_any_batch(plan: list[tuple[bool, int]], limit: int) -> None:
    router = Recorder()
    batch = [
        inv(str(n), delay, name="seq" if seq else "work") for n, (seq, delay) in enumerate(plan)
    ]
    outputs = await ParallelToolRouter(router, limit=limit, sequential=is_seq)(batch)
    assert [o.id for o in outputs] == [i.id for i in batch]
    for n, (seq, _) in enumerate(plan):
        if not seq:
            continue
        start, end = router.spans[str(n)]
        assert all(router.spans[str(m)][1] <= start for m in range(n))
        assert all(router.spans[str(m)][0] >= end for m in range(n + 1, len(plan)))


# --- cancellation and options ------------------------------------------------------------------


async def test_cancelling_the_call_cancels_every_invocation_and_leaves_nothing_running() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=3)
    with anyio.move_on_after(1.5):
        await parallel([inv(str(n), 1 + n) for n in range(6)])
    assert sorted(router.finished) == ["0"]
    assert sorted(router.cancelled) == ["1", "2", "3"]
    await anyio.sleep(10)
    assert router.in_flight == 0
    assert sorted(router.started) == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"limit": 0}, ValueError, "limit must be >= 1"),
        ({"limit": True}, TypeError, "limit must be an int >= 1"),
        ({"limit": "3"}, TypeError, "limit must be an int >= 1"),
        ({"policy": "isolate"}, TypeError, "policy must be a JoinPolicy"),
        ({"tool_timeout": 0}, ValueError, "tool_timeout must be a finite number of seconds > 0"),
        ({"tool_timeout": math.nan}, ValueError, "tool_timeout must be a finite number of sec"),
        ({"tool_timeout": True}, TypeError, "tool_timeout must be a finite number of seconds"),
        ({"wait_timeout": -1}, ValueError, "wait_timeout must be a finite number of seconds > 0"),
        ({"sequential": "search"}, TypeError, "sequential must be a function"),
        ({"describe": None}, TypeError, "describe must be a function"),
        ({"catalog": object()}, TypeError, "catalog must be a ToolCatalog"),
    ],
)
def test_bad_options_are_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ParallelToolRouter(Recorder(), **kwargs)


def test_the_router_must_be_a_service() -> None:
    with pytest.raises(TypeError, match="must be a Service"):
        ParallelToolRouter(lambda inv: inv)  # type: ignore[arg-type]


def test_repr_shows_the_options() -> None:
    parallel = ParallelToolRouter(ToolRouter(), limit=3, tool_timeout=2.0)
    assert repr(parallel) == (
        "ParallelToolRouter(ToolRouter([]), limit=3, policy=ISOLATE, tool_timeout=2.0)"
    )


async def test_a_limit_shared_by_every_batch_and_the_per_batch_limit_hold_together() -> None:
    from towerpy import ConcurrencyLimitLayer

    recorder = Recorder()
    probe = InFlightProbe(recorder)
    shared = ConcurrencyLimitLayer(4).layer(probe)
    batches = [ParallelToolRouter(shared, limit=3) for _ in range(3)]
    per_batch_peak: dict[int, int] = {}

    async def run(n: int) -> None:
        await batches[n]([inv(f"{n}-{k}", 1) for k in range(6)])

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(run, n)
    assert probe.peak == 4  # the shared bound
    for n in range(3):  # and no batch ever had more than 3 running
        spans = [recorder.spans[f"{n}-{k}"] for k in range(6)]
        per_batch_peak[n] = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert max(per_batch_peak.values()) <= 3
    assert anyio.current_time() == 5  # 18 one-second calls, 4 at a time


@settings(deadline=None, max_examples=60)
@given(
    plan=st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=12),
    limit=st.integers(1, 5),
    policy=st.sampled_from(list(JoinPolicy)),
)
async def test_every_policy_keeps_its_promise_whatever_the_latencies_and_failures(
    plan: list[tuple[int, bool]], limit: int, policy: JoinPolicy
) -> None:
    router = Recorder()
    batch = [inv(str(n), delay, fail) for n, (delay, fail) in enumerate(plan)]
    failing = [n for n, (_, fail) in enumerate(plan) if fail]
    start = anyio.current_time()
    error: Boom | None = None
    outputs = []
    try:
        outputs = await ParallelToolRouter(router, limit=limit, policy=policy)(batch)
    except Boom as raised:
        error = raised
    if error is None:
        assert policy is JoinPolicy.ISOLATE or not failing
        assert [o.id for o in outputs] == [i.id for i in batch]
        assert [o.is_error for o in outputs] == [fail for _, fail in plan]
        assert router.cancelled == []
    elif policy is JoinPolicy.JOIN_ALL:
        assert failing
        assert error is router.errors[str(failing[0])]
        assert len(router.finished) + len(failing) == len(plan)
    else:
        # FAIL_FAST: it is the first failure in time, and the call returned right then
        assert policy is JoinPolicy.FAIL_FAST
        assert anyio.current_time() == router.spans[error.args[0]][1]
        first = min(router.spans[str(n)][1] for n in failing if str(n) in router.spans)
        assert router.spans[error.args[0]][1] == first
        started = list(router.started)
        await anyio.sleep(10)
        assert router.started == started
    assert router.in_flight == 0
    assert router.peak <= limit
    assert anyio.current_time() - start <= sum(delay for delay, _ in plan) + 10


@settings(deadline=None, max_examples=60)
@given(
    plan=st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=12),
    limit=st.integers(1, 5),
    policy=st.sampled_from(list(JoinPolicy)),
    cancel_at=st.integers(0, 6),
    tool_timeout=st.sampled_from([None, 2.5]),
)
async def test_cancelling_a_batch_at_any_moment_leaves_nothing_running(
    plan: list[tuple[int, bool]],
    limit: int,
    policy: JoinPolicy,
    cancel_at: int,
    tool_timeout: float | None,
) -> None:
    router = Recorder()
    batch = [inv(str(n), delay, fail) for n, (delay, fail) in enumerate(plan)]
    parallel = ParallelToolRouter(router, limit=limit, policy=policy, tool_timeout=tool_timeout)
    with anyio.move_on_after(cancel_at + 0.5), contextlib.suppress(Boom, Elapsed):
        await parallel(batch)
    assert router.in_flight == 0  # every invocation still running was cancelled with the call
    started = list(router.started)
    await anyio.sleep(20)
    assert router.started == started
    assert router.peak <= limit


# --- tool_timeout bounds the run, wait_timeout the wait -------------------------------------------


def one_at_a_time() -> tuple[ToolRouter, dict[str, tuple[float, float]]]:
    spans: dict[str, tuple[float, float]] = {}

    @tool(concurrency_limit=1)
    async def browse(label: str) -> str:
        """Browses, one page at a time."""
        start = anyio.current_time()
        await anyio.sleep(1)
        spans[label] = (start, anyio.current_time())
        return label

    return ToolRouter([browse]), spans


def browse_calls(count: int) -> list[ToolInvocation]:
    return [
        ToolInvocation(id=str(n), name="browse", arguments={"label": f"p{n}"}) for n in range(count)
    ]


async def test_tool_timeout_does_not_count_the_wait_for_the_tools_own_permit() -> None:
    router, spans = one_at_a_time()
    outputs = await ParallelToolRouter(router, limit=3, tool_timeout=1.5)(browse_calls(3))
    assert [o.content for o in outputs] == ["p0", "p1", "p2"]  # the third waited 2 s, ran 1 s
    assert spans == {"p0": (0, 1), "p1": (1, 2), "p2": (2, 3)}


async def test_tool_timeout_does_not_count_the_wait_for_a_limit_around_the_router() -> None:
    from towerpy import ConcurrencyLimitLayer

    router, _ = one_at_a_time()
    shared = ConcurrencyLimitLayer(1).layer(router)
    outputs = await ParallelToolRouter(shared, limit=3, tool_timeout=1.5, catalog=router)(
        browse_calls(3)
    )
    assert not any(o.is_error for o in outputs)
    assert anyio.current_time() == 3


async def test_tool_timeout_still_bounds_the_run_after_a_wait() -> None:
    started: list[float] = []

    @tool(concurrency_limit=1)
    async def slow(n: int) -> int:
        """Takes n seconds."""
        started.append(anyio.current_time())
        await anyio.sleep(n)
        return n

    parallel = ParallelToolRouter(ToolRouter([slow]), limit=2, tool_timeout=1.5)
    outputs = await parallel(
        [ToolInvocation(id=str(i), name="slow", arguments={"n": n}) for i, n in enumerate([1, 2])]
    )
    assert outputs[0].content == 1
    assert outputs[1] == ToolOutput(
        id="1", name="slow", content="tool 'slow' timed out after 1.5 seconds", is_error=True
    )
    assert started == [0, 1]
    assert anyio.current_time() == 2.5  # waited 1 s, then ran its 1.5 s


async def test_wait_timeout_reports_an_invocation_that_never_started_as_such() -> None:
    router, spans = one_at_a_time()
    parallel = ParallelToolRouter(router, limit=3, tool_timeout=1.5, wait_timeout=1.5)
    outputs = await parallel(browse_calls(3))
    assert [o.is_error for o in outputs] == [False, False, True]
    assert outputs[2].content == (
        "tool 'browse' did not start: it waited 1.5 seconds for capacity (other calls held its "
        "limit); try it again later"
    )
    assert sorted(spans) == ["p0", "p1"]  # the third never ran


@pytest.mark.parametrize("policy", [JoinPolicy.JOIN_ALL, JoinPolicy.FAIL_FAST])
async def test_an_invocation_that_waited_too_long_fails_with_wait_elapsed(
    policy: JoinPolicy,
) -> None:
    from towerpy import WaitElapsed

    router, _ = one_at_a_time()
    parallel = ParallelToolRouter(router, limit=2, policy=policy, wait_timeout=0.5)
    with pytest.raises(WaitElapsed) as caught:
        await parallel(browse_calls(2))
    assert isinstance(caught.value, Elapsed)
    assert caught.value.seconds == 0.5
    assert (
        str(caught.value) == "tool 'browse' did not start within 0.5s: it was waiting for capacity"
    )


async def test_the_wait_bound_counts_every_wait_of_an_invocation_together() -> None:
    from towerpy import ConcurrencyLimitLayer

    router, _ = one_at_a_time()
    shared = ConcurrencyLimitLayer(2).layer(router)
    parallel = ParallelToolRouter(shared, limit=3, wait_timeout=1.25, catalog=router)
    outputs = await parallel(browse_calls(3))
    # p1 waits 1 s for the tool's permit: within the bound. p2 waits 1 s for the shared limit,
    # then for the tool's permit: each wait alone is within the bound, both together are not
    assert [o.is_error for o in outputs] == [False, False, True]
    assert "did not start" in outputs[2].content
    assert anyio.current_time() == 2


async def test_an_agents_tool_timeout_does_not_count_waiting_for_a_permit() -> None:
    from towerpy.llm import Agent, Message, ScriptedModel, ToolCall

    router, _ = one_at_a_time()
    calls = [ToolCall(id=str(n), name="browse", arguments={"label": f"p{n}"}) for n in range(3)]
    model = ScriptedModel([Message.assistant(tool_calls=calls), Message.assistant("done")])
    result = await Agent(model, tools=router, tool_timeout=1.5).run("browse three pages")
    assert [m.content for m in result.messages if m.role == "tool"] == ["p0", "p1", "p2"]


# --- JOIN_ALL keeps every outcome -----------------------------------------------------------------


async def test_join_all_attaches_every_outcome_to_the_error_it_raises() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=5, policy=JoinPolicy.JOIN_ALL)
    batch = [inv("a", 1), inv("b", 2, fail=True), inv("c", 4), inv("d", 1, fail=True)]
    with pytest.raises(Boom) as caught:
        await parallel(batch)
    error = caught.value
    assert type(error) is Boom
    outcomes = error.tool_outcomes  # type: ignore[attr-defined]
    assert [o.content if isinstance(o, ToolOutput) else o for o in outcomes] == [
        "A",
        router.errors["b"],
        "C",
        router.errors["d"],
    ]
    [note] = error.__notes__
    assert note.startswith("towerpy tool batch: 2 of 4 invocations failed (JOIN_ALL): ")
    assert "'work' (id 'b'): Boom, 'work' (id 'd'): Boom" in note


async def test_an_error_raised_by_every_batch_keeps_one_note() -> None:
    cached = KeyError("service down")

    @tool
    async def down(x: int) -> int:
        """Always down."""
        raise cached

    parallel = ParallelToolRouter(ToolRouter([down]), policy=JoinPolicy.JOIN_ALL)
    batch = [ToolInvocation(id=str(n), name="down", arguments={"x": n}) for n in range(2)]
    for _ in range(3):
        with pytest.raises(KeyError):
            await parallel(batch)
    assert len(cached.__notes__) == 1
    assert cached.tool_outcomes == [cached, cached]  # type: ignore[attr-defined]


# --- odd errors never lose an output --------------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


async def test_an_error_whose_str_fails_still_becomes_an_error_output() -> None:
    @tool
    async def odd(x: int) -> int:
        """Fails oddly."""
        raise Unprintable

    outputs = await ParallelToolRouter(ToolRouter([odd]))(
        [ToolInvocation(id=str(n), name="odd", arguments={"x": n}) for n in range(2)]
    )
    assert [o.content for o in outputs] == [
        "tool 'odd' failed: Unprintable (its message could not be read: RuntimeError)"
    ] * 2


def stray_cancelling_tool() -> ToolRouter:
    @tool
    async def waits_on_others(x: int) -> int:
        """Awaits a future that something else cancels."""
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.cancel)
        return await future  # type: ignore[no-any-return]

    @tool
    async def fine(x: int) -> int:
        """Works."""
        await anyio.sleep(x)
        return x

    return ToolRouter([waits_on_others, fine])


def stray_batch(size: int) -> list[ToolInvocation]:
    names = ["waits_on_others", "fine"]
    return [ToolInvocation(id=str(n), name=names[n % 2], arguments={"x": 1}) for n in range(size)]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("size", [1, 4])
async def test_a_stray_cancelled_error_under_isolate_is_an_error_output(size: int) -> None:
    outputs = await ParallelToolRouter(stray_cancelling_tool())(stray_batch(size))
    assert outputs[0].is_error
    assert outputs[0].content.startswith(
        "tool 'waits_on_others' failed: RuntimeError: tool 'waits_on_others' raised "
        "CancelledError although nothing cancelled it"
    )
    assert [o.content for o in outputs[1::2]] == [1] * (size // 2)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("policy", [JoinPolicy.JOIN_ALL, JoinPolicy.FAIL_FAST])
async def test_a_stray_cancelled_error_is_raised_as_a_real_error(policy: JoinPolicy) -> None:
    parallel = ParallelToolRouter(stray_cancelling_tool(), policy=policy)
    with pytest.raises(RuntimeError, match="raised CancelledError although nothing cancelled"):
        await parallel(stray_batch(4))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_real_cancellation_is_still_cancellation() -> None:
    parallel = ParallelToolRouter(stray_cancelling_tool())
    with anyio.move_on_after(0.5) as scope:
        await parallel(stray_batch(4)[1:2] * 3)
    assert scope.cancelled_caught


# --- FAIL_FAST and the threads of sync tools ------------------------------------------------------


async def test_fail_fast_reports_the_threads_of_sync_tools_it_could_not_stop() -> None:
    import threading

    from towerpy.tools import ThreadLimiter

    limiter = ThreadLimiter(4)
    started = threading.Event()
    gate = threading.Event()

    @tool(thread_limiter=limiter)
    def crunch(x: int) -> int:
        """Crunches numbers in a thread."""
        started.set()
        gate.wait(10)
        return x

    @tool
    async def broken(x: int) -> int:
        """Fails once the thread runs."""
        await anyio.to_thread.run_sync(started.wait)
        raise Boom("broken")

    parallel = ParallelToolRouter(ToolRouter([crunch, broken]), policy=JoinPolicy.FAIL_FAST)
    batch = [
        ToolInvocation(id="1", name="crunch", arguments={"x": 1}),
        ToolInvocation(id="2", name="broken", arguments={"x": 2}),
    ]
    try:
        with pytest.raises(Boom) as caught:
            await parallel(batch)
        [note] = caught.value.__notes__
        assert note.startswith(
            "towerpy tool batch: 1 worker thread(s) of cancelled sync tools were still running "
            "when the batch raised ('crunch')"
        )
        assert limiter.abandoned == 1
        assert limiter.busy == 1  # it keeps its slot: abandoned threads stay bounded
    finally:
        gate.set()
    for _ in range(limiter.total):  # the last slot is the thread's: it comes back once it returns
        await limiter.acquire()
    assert limiter.abandoned == 0
    for _ in range(limiter.total):
        limiter.release()


# --- catalogs, and helpers started only when needed ----------------------------------------------


async def test_a_sequential_tool_refuses_to_run_in_a_batch_that_cannot_see_it_is_sequential() -> (
    None
):
    @tool(sequential=True)
    async def deploy(x: int) -> int:
        """Deploys."""
        return x

    router = ToolRouter([deploy])
    wrapped = InFlightProbe(router)
    batch = [ToolInvocation(id=str(n), name="deploy", arguments={"x": n}) for n in range(2)]
    outputs = await ParallelToolRouter(wrapped)(batch)
    assert all(o.is_error for o in outputs)
    assert "must run alone" in outputs[0].content
    assert "catalog=" in outputs[0].content
    [alone] = await ParallelToolRouter(wrapped)(batch[:1])  # alone anyway: it runs
    assert alone.content == 0
    assert wrapped.peak == 1


async def test_a_batch_of_calls_that_never_wait_runs_in_the_callers_task_alone() -> None:
    tasks: set[int] = set()

    @tool
    async def instant(x: int) -> int:
        """Answers at once."""
        tasks.add(id(current_task()))
        return x

    batch = [ToolInvocation(id=str(n), name="instant", arguments={"x": n}) for n in range(10)]
    outputs = await ParallelToolRouter(ToolRouter([instant]), limit=16)(batch)
    assert [o.content for o in outputs] == list(range(10))
    assert tasks == {id(current_task())}


async def test_calls_that_wait_all_run_at_once_up_to_the_limit() -> None:
    router = Recorder()
    await ParallelToolRouter(router, limit=6)([inv(str(n), 1) for n in range(10)])
    assert router.peak == 6
    assert len(router.tasks) == 6
    assert {router.spans[str(n)] for n in range(6)} == {(0, 1)}
    assert anyio.current_time() == 2


def test_importing_the_tools_loads_nothing_of_the_llm_package() -> None:
    import subprocess
    import sys

    code = (
        "import towerpy.tools, sys; print([m for m in sys.modules if m.startswith('towerpy.llm')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
    from towerpy.llm import ParallelToolsLayer as FromLlm
    from towerpy.tools import ParallelToolsLayer

    assert ParallelToolsLayer is FromLlm


# --- priorities --------------------------------------------------------------------------------


def urgency(invocation: ToolInvocation) -> int:
    return int(invocation.id.split(":")[1])


def pinv(id: str, priority: int, delay: float = 1, name: str = "work", **kw: Any) -> ToolInvocation:
    return ToolInvocation(
        id=f"{id}:{priority}", name=name, arguments={"delay": delay, "fail": False}, **kw
    )


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_with_priorities_the_highest_start_first_and_outputs_keep_request_order(
    limit: int,
) -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=limit, priority=urgency)
    batch = [pinv("a", 0), pinv("b", 2), pinv("c", 1), pinv("d", 2), pinv("e", 5), pinv("f", 0)]
    outputs = await parallel(batch)
    assert [o.id for o in outputs] == [i.id for i in batch]
    assert router.started == ["e:5", "b:2", "d:2", "c:1", "a:0", "f:0"]
    assert router.peak == limit


async def test_without_priorities_a_batch_starts_in_request_order() -> None:
    router = Recorder()
    await ParallelToolRouter(router, limit=1)([pinv("a", 0), pinv("b", 9)])
    assert router.started == ["a:0", "b:9"]


async def test_priorities_order_the_invocations_between_barriers_only() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=1, sequential=is_seq, priority=urgency)
    batch = [pinv("a", 0), pinv("b", 1), pinv("s", 9, name="seq"), pinv("c", 0), pinv("d", 3)]
    outputs = await parallel(batch)
    assert [o.id for o in outputs] == [i.id for i in batch]
    assert router.started == ["b:1", "a:0", "s:9", "d:3", "c:0"]


async def test_with_dependencies_the_ready_invocation_of_highest_priority_starts_first() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=1, priority=urgency)
    batch = [
        pinv("a", 0),
        pinv("b", 1, depends_on=("a:0",)),
        pinv("c", 5, depends_on=("a:0",)),
        pinv("d", 2),
        pinv("e", 9, depends_on=("d:2",)),
    ]
    outputs = await parallel(batch)
    assert [o.id for o in outputs] == [i.id for i in batch]
    # d (2) before a (0); then e (9), ready once d finished; then a; then c (5) before b (1)
    assert router.started == ["d:2", "e:9", "a:0", "c:5", "b:1"]


async def test_a_priority_that_is_not_an_int_fails_the_batch_before_anything_runs() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=1, priority=lambda invocation: "high")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="a priority must be an int"):
        await parallel([pinv("a", 0), pinv("b", 1)])
    assert router.started == []
    assert "priority=" in repr(parallel)


async def _echo_step(request: Any) -> Any:
    return request


async def test_parallel_tools_layer_passes_its_priority_to_each_batch() -> None:
    from towerpy.tools import ParallelToolsLayer

    layer = ParallelToolsLayer(Recorder(), limit=1, priority=urgency)
    assert layer.layer(service_fn(_echo_step)).tools._priority is urgency
    with pytest.raises(TypeError, match="priority must be a function"):
        ParallelToolsLayer(Recorder(), priority=3)  # type: ignore[arg-type]
