"""ParallelToolRouter.open_batch: invocations submitted one at a time, each starting at once.

The same limit, timeouts, barriers and join policies as a batch given whole, in virtual time.
"""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towerpy import Elapsed, Service
from towerpy.testing import wait_all_tasks_blocked
from towerpy.tools import (
    JoinPolicy,
    ParallelToolRouter,
    ToolInvocation,
    ToolOutput,
    ToolRouter,
    tool,
)

from .test_parallel import Boom, Recorder, inv, live_tasks

pytestmark = pytest.mark.anyio


async def test_each_invocation_starts_the_moment_it_is_submitted() -> None:
    router = Recorder()
    started: list[tuple[int, str, float]] = []
    finished: list[tuple[int, str, float]] = []
    parallel = ParallelToolRouter(router, limit=5)
    async with parallel.open_batch(
        on_start=lambda i, invocation: started.append((i, invocation.id, anyio.current_time())),
        on_finish=lambda i, out, err: finished.append((i, out.id, anyio.current_time())),
    ) as batch:
        assert batch.submit(inv("a", 3)) == 0
        await anyio.sleep(1)
        assert batch.submit(inv("b", 1)) == 1
        await anyio.sleep(1)
        assert batch.submit(inv("c", 0.5)) == 2
        outputs = await batch.results()
    assert [o.content for o in outputs] == ["A", "B", "C"]  # in submission order
    assert started == [(0, "a", 0), (1, "b", 1), (2, "c", 2)]
    assert {id: at for _, id, at in finished} == {"a": 3, "b": 2, "c": 2.5}
    assert {id: span[0] for id, span in router.spans.items()} == {"a": 0, "b": 1, "c": 2}


async def test_beyond_the_limit_invocations_wait_their_turn_in_order() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=2)
    async with parallel.open_batch() as batch:
        for name, delay in [("a", 3), ("b", 1), ("c", 1), ("d", 1)]:
            batch.submit(inv(name, delay))
        outputs = await batch.results()
    assert router.peak == 2
    assert {id: span[0] for id, span in router.spans.items()} == {"a": 0, "b": 0, "c": 1, "d": 2}
    assert [o.id for o in outputs] == ["a", "b", "c", "d"]
    assert anyio.current_time() == 3


async def test_at_most_limit_tasks_are_alive_for_a_large_batch() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=3)
    before = live_tasks()
    async with parallel.open_batch() as batch:
        for n in range(200):
            batch.submit(inv(f"i{n}", 1))
        await wait_all_tasks_blocked()
        during = live_tasks()
        outputs = await batch.results()
    assert len(outputs) == 200
    assert router.peak == 3
    assert anyio.current_time() == 67  # ceil(200 / 3) rounds of 1 s
    assert during == before + 3  # one task per invocation running, none for those waiting


async def test_leaving_the_block_without_results_waits_for_the_invocations() -> None:
    router = Recorder()
    async with ParallelToolRouter(router).open_batch() as batch:
        batch.submit(inv("a", 2))
    assert anyio.current_time() == 2
    assert router.finished == ["a"]


async def test_isolate_turns_a_failure_into_an_error_output() -> None:
    router = Recorder()
    errors: list[Exception | None] = []
    parallel = ParallelToolRouter(router, policy=JoinPolicy.ISOLATE)
    async with parallel.open_batch(on_finish=lambda i, out, err: errors.append(err)) as batch:
        batch.submit(inv("a", 1, fail=True))
        batch.submit(inv("b", 2))
        outputs = await batch.results()
    assert outputs[0].is_error
    assert outputs[0].content == "tool 'work' failed: Boom: a"
    assert outputs[1].content == "B"
    assert isinstance(errors[0], Boom)
    assert errors[1] is None


async def test_join_all_runs_everything_then_raises_the_earliest_failure() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, policy=JoinPolicy.JOIN_ALL)

    async def run() -> None:
        async with parallel.open_batch() as batch:
            batch.submit(inv("a", 3))
            batch.submit(inv("b", 2, fail=True))
            batch.submit(inv("c", 1, fail=True))
            await batch.results()

    with pytest.raises(Boom, match="b") as caught:
        await run()
    assert anyio.current_time() == 3
    outcomes = caught.value.tool_outcomes  # type: ignore[attr-defined]
    assert [type(o).__name__ for o in outcomes] == ["ToolOutput", "Boom", "Boom"]


async def test_fail_fast_cancels_the_invocations_and_the_submitting_code() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, policy=JoinPolicy.FAIL_FAST)
    reached: list[str] = []

    async def run() -> None:
        async with parallel.open_batch() as batch:
            batch.submit(inv("a", 5))
            batch.submit(inv("b", 1, fail=True))
            try:
                await anyio.sleep(10)  # still reading a model's answer, say
            finally:
                reached.append(f"cancelled at {anyio.current_time():g}")
            reached.append("not reached")

    with pytest.raises(Boom, match="b"):
        await run()
    assert reached == ["cancelled at 1"]
    assert router.cancelled == ["a"]
    assert anyio.current_time() == 1
    await anyio.sleep(10)
    assert router.finished == []  # nothing went on in the background


async def test_an_error_in_the_block_cancels_the_invocations_and_propagates_unchanged() -> None:
    router = Recorder()

    async def run() -> None:
        async with ParallelToolRouter(router).open_batch() as batch:
            batch.submit(inv("a", 5))
            await anyio.sleep(1)
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await run()
    assert router.cancelled == ["a"]
    assert anyio.current_time() == 1


async def test_cancelling_the_block_cancels_the_invocations() -> None:
    router = Recorder()
    with anyio.move_on_after(1):
        async with ParallelToolRouter(router).open_batch() as batch:
            batch.submit(inv("a", 5))
            batch.submit(inv("b", 5))
    assert sorted(router.cancelled) == ["a", "b"]
    assert anyio.current_time() == 1


async def test_a_sequential_tool_waits_for_the_earlier_and_holds_back_the_later() -> None:
    spans: dict[str, tuple[float, float]] = {}

    async def record(key: str, seconds: float) -> str:
        """Records when it runs."""
        start = anyio.current_time()
        await anyio.sleep(seconds)
        spans[key] = (start, anyio.current_time())
        return key

    work = tool(record, name="work")
    alone = tool(record, name="alone", sequential=True)
    parallel = ParallelToolRouter(ToolRouter([work, alone]))

    def call(key: str, seconds: float, name: str = "work") -> ToolInvocation:
        return ToolInvocation(id=key, name=name, arguments={"key": key, "seconds": seconds})

    async with parallel.open_batch() as batch:
        batch.submit(call("a", 3))
        await anyio.sleep(1)
        batch.submit(call("s", 1, "alone"))
        await anyio.sleep(1)
        batch.submit(call("b", 1))
        outputs = await batch.results()
    assert spans == {"a": (0, 3), "s": (3, 4), "b": (4, 5)}
    assert [o.content for o in outputs] == ["a", "s", "b"]


async def test_without_a_catalog_a_sequential_tool_refuses_to_run_in_an_open_batch() -> None:
    @tool(sequential=True)
    async def alone() -> str:
        """Runs alone."""
        return "ok"

    router = ToolRouter([alone])

    class Wrapped(Service[ToolInvocation, ToolOutput]):
        async def call(self, request: ToolInvocation) -> ToolOutput:
            return await router(request)

    parallel = ParallelToolRouter(Wrapped())
    async with parallel.open_batch() as batch:
        batch.submit(ToolInvocation(id="a", name="alone"))
        (output,) = await batch.results()
    assert output.is_error
    assert "cannot tell which tools are sequential" in output.content


async def test_the_tool_timeout_and_wait_timeout_apply() -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, tool_timeout=1)
    async with parallel.open_batch() as batch:
        batch.submit(inv("a", 5))
        (output,) = await batch.results()
    assert output.content == "tool 'work' timed out after 1 seconds"
    assert anyio.current_time() == 1

    strict = ParallelToolRouter(router, tool_timeout=1, policy=JoinPolicy.FAIL_FAST)

    async def run() -> None:
        async with strict.open_batch() as batch:
            batch.submit(inv("b", 5))

    with pytest.raises(Elapsed):
        await run()


async def test_misuse_is_a_clear_error() -> None:
    parallel = ParallelToolRouter(Recorder())
    batch = parallel.open_batch()
    with pytest.raises(RuntimeError, match="needs the batch entered"):
        batch.submit(inv("a"))
    with pytest.raises(RuntimeError, match="needs the batch entered"):
        await batch.results()
    async with batch:
        await batch.results()
        with pytest.raises(RuntimeError, match="this batch is closed"):
            batch.submit(inv("b"))
    with pytest.raises(RuntimeError, match="entered once"):
        await batch.__aenter__()
    assert "OpenBatch(submitted=0" in repr(batch)


async def test_the_batch_api_is_unchanged_beside_it() -> None:
    # the same invocations, whole: the same outputs as submitted one by one
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=2)
    whole = await parallel([inv("a", 2), inv("b", 1), inv("c", 1)])
    async with parallel.open_batch() as batch:
        for invocation in [inv("a", 2), inv("b", 1), inv("c", 1)]:
            batch.submit(invocation)
        one_by_one = await batch.results()
    assert whole == one_by_one


def is_seq(name: str) -> bool:
    return name == "seq"


@settings(deadline=None, max_examples=60)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 3), st.booleans(), st.booleans()),
        max_size=12,
    ),
    limit=st.integers(1, 4),
)
async def test_limits_order_and_barriers_hold_for_any_submissions(
    plan: list[tuple[int, int, bool, bool]], limit: int
) -> None:
    router = Recorder()
    parallel = ParallelToolRouter(router, limit=limit, sequential=is_seq)
    submitted: dict[str, float] = {}
    async with parallel.open_batch() as batch:
        for n, (gap, delay, seq, fail) in enumerate(plan):
            await anyio.sleep(gap)
            submitted[str(n)] = anyio.current_time()
            batch.submit(inv(str(n), delay, fail=fail, name="seq" if seq else "work"))
        outputs = await batch.results()
    assert [o.id for o in outputs] == [str(n) for n in range(len(plan))]
    assert [o.is_error for o in outputs] == [fail for _, _, _, fail in plan]
    assert router.peak <= limit
    assert router.in_flight == 0
    for n, (_, _, seq, _) in enumerate(plan):
        start, end = router.spans[str(n)]
        assert start >= submitted[str(n)]
        if seq:  # alone: after every earlier one, before every later one
            assert all(router.spans[str(m)][1] <= start for m in range(n))
            assert all(router.spans[str(m)][0] >= end for m in range(n + 1, len(plan)))


@settings(deadline=None, max_examples=60)
@given(
    delays=st.lists(st.integers(1, 5), min_size=1, max_size=10),
    cancel_at=st.integers(0, 6),
    limit=st.integers(1, 4),
)
async def test_nothing_runs_on_after_the_block_is_cancelled(
    delays: list[int], cancel_at: int, limit: int
) -> None:
    router = Recorder()
    with anyio.move_on_after(cancel_at):
        async with ParallelToolRouter(router, limit=limit).open_batch() as batch:
            for n, delay in enumerate(delays):
                batch.submit(inv(str(n), delay))
                await anyio.sleep(1)
            await batch.results()
    assert router.in_flight == 0
    finished = list(router.finished)
    await anyio.sleep(100)
    assert router.finished == finished  # nothing finished in the background
    assert set(router.started) == set(router.finished) | set(router.cancelled)
