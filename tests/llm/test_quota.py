"""ProviderQuotaLayer in virtual time: budgets, settlement, learning, and the herd's one pause."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from typing_extensions import override

from towerpy import (
    ConstantBackoff,
    RateLimitLayer,
    RequestTooLarge,
    RetryPolicy,
    Service,
    ServiceBuilder,
    TokenBucket,
)
from towerpy.errors import Overloaded, ProviderUnavailable, RateLimited
from towerpy.limit import RateStatistics
from towerpy.llm import (
    ChatRequest,
    Message,
    ProviderQuota,
    ProviderQuotaLayer,
    RateLimitInfo,
    StepOutcome,
    Usage,
    is_retryable,
)
from towerpy.testing import mock_service, wait_all_tasks_blocked

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio


def ask(tag: str) -> ChatRequest:
    return ChatRequest(messages=[Message.user(tag)])


def tag_of(request: ChatRequest) -> str:
    content = request.messages[-1].content
    assert content is not None
    return content


Answer = StepOutcome | BaseException


@dataclass
class Step(Service[ChatRequest, StepOutcome]):
    """A step service that records when each request reached it and answers from ``answer``."""

    answer: Callable[[ChatRequest], Answer] = field(
        default=lambda request: outcome(request, usage=None)
    )
    latency: float = 0.0
    sent: list[tuple[float, str]] = field(default_factory=list)

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        self.sent.append((anyio.current_time(), tag_of(request)))
        if self.latency:
            await anyio.sleep(self.latency)
        result = self.answer(request)
        if isinstance(result, BaseException):
            raise result
        return result

    def times(self) -> list[float]:
        return [at for at, _ in self.sent]

    def tags(self) -> list[str]:
        return [tag for _, tag in self.sent]


def outcome(
    request: ChatRequest, usage: int | None = None, info: RateLimitInfo | None = None
) -> StepOutcome:
    return StepOutcome(
        messages=[*request.messages, Message.assistant("ok")],
        done=True,
        usage=None if usage is None else Usage(input_tokens=usage, output_tokens=0),
        rate_limits=info,
    )


def rate_limited(retry_after: float | None = 3.0, **options: Any) -> RateLimited:
    return RateLimited("openai: HTTP 429", retry_after=retry_after, retryable=True, **options)


def fixed(tokens: float) -> Callable[[ChatRequest], float]:
    return lambda request: tokens


async def start_all(
    tg: anyio.abc.TaskGroup, model: Service[ChatRequest, Any], tags: list[str]
) -> None:
    """Starts one caller per tag, in that order: each has arrived before the next starts."""
    for tag in tags:
        tg.start_soon(model, ask(tag))
        await wait_all_tasks_blocked()


# -- budgets and settlement ---------------------------------------------------------------------


async def test_each_call_takes_one_request_from_the_request_budget() -> None:
    step = Step()
    model = ProviderQuotaLayer(requests=2, per=1.0, learn=False).layer(step)
    for n in range(5):
        await model(ask(str(n)))
    # a bucket of 2 a second, full at the start: two at once, then one every half second
    assert step.times() == [0.0, 0.0, 0.5, 1.0, 1.5]


async def test_the_token_budget_charges_the_estimate_and_settles_it_with_the_usage() -> None:
    usage = {"a": 200, "b": 1100, "c": 400}
    step = Step(lambda request: outcome(request, usage=usage[tag_of(request)]))
    # 100 tokens a second, at most 1000; every request is estimated at 600
    layer = ProviderQuotaLayer(tokens=1000, per=10.0, estimate=fixed(600), learn=False)
    model = layer.layer(step)
    for tag in "abc":
        await model(ask(tag))
    a, b, c = step.times()
    assert b - a == 0.0  # 1000 - 600 + 400 refunded = 800: the second estimate fits at once
    # 800 - 600 - 500 of debt = -300: the third needs 900 more, 9 seconds at 100 a second
    assert c - b == 9.0
    stats = layer.statistics()
    assert (stats.tokens_estimated, stats.tokens_reported) == (1800, 1700)
    assert stats.calls == 3


async def test_a_shared_bucket_is_settled_and_a_call_without_usage_keeps_its_estimate() -> None:
    bucket = TokenBucket(100, per=1.0, burst=1000)
    answers = iter([outcome(ask("a"), usage=100), outcome(ask("b"), usage=None)])
    step = Step(lambda request: next(answers))
    model = ProviderQuotaLayer(tokens=bucket, estimate=fixed(300)).layer(step)
    await model(ask("a"))
    assert bucket.statistics().tokens == 900  # 300 taken, 200 given back
    await model(ask("b"))
    assert bucket.statistics().tokens == 600  # no usage reported: the estimate stays spent


class Backend:
    """A RateBackend that is not a TokenBucket (as a Redis bucket is not): it records calls."""

    def __init__(self, burst: float = 1000.0) -> None:
        self.level = burst
        self._burst = burst
        self.calls: list[tuple[str, float]] = []

    @property
    def burst(self) -> float:
        return self._burst

    def acquire_nowait(self, cost: float) -> bool:
        return False  # always asks: as a remote backend does

    async def acquire(self, cost: float) -> None:
        self.calls.append(("acquire", cost))
        self.level -= cost

    async def try_acquire(self, cost: float) -> bool:
        self.calls.append(("try_acquire", cost))
        return True

    def refund(self, cost: float) -> None:
        self.calls.append(("refund", cost))
        self.level += cost

    def charge(self, cost: float) -> None:
        self.calls.append(("charge", cost))
        self.level -= cost

    def statistics(self) -> RateStatistics:
        return RateStatistics(10.0, 1.0, self._burst, self.level, 0)


async def test_any_rate_backend_is_charged_and_settled_without_receipts() -> None:
    backend = Backend()
    usage = iter([250, 700])
    step = Step(lambda request: outcome(request, usage=next(usage)))
    model = ProviderQuotaLayer(tokens=backend, estimate=fixed(400)).layer(step)
    await model(ask("a"))
    await model(ask("b"))
    assert backend.calls == [
        ("acquire", 400),
        ("refund", 150),
        ("acquire", 400),
        ("charge", 300),
    ]


async def test_an_estimate_above_the_token_budget_is_refused_and_gives_the_request_back() -> None:
    requests = TokenBucket(1, per=100.0)
    step = Step()
    model = ProviderQuotaLayer(requests=requests, tokens=100, estimate=fixed(101)).layer(step)
    with pytest.raises(RequestTooLarge):
        await model(ask("big"))
    assert step.sent == []
    assert requests.statistics().tokens == 1  # the request token came back


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "many", None])
async def test_an_estimate_that_is_no_cost_is_refused_at_the_call(bad: Any) -> None:
    model = ProviderQuotaLayer(tokens=1000, estimate=lambda request: bad).layer(Step())
    with pytest.raises(ValueError, match="an estimate must be a finite number of tokens >= 0"):
        await model(ask("x"))


# -- the herd's pause ---------------------------------------------------------------------------


async def test_a_429_pauses_all_50_waiting_callers_until_retry_after_then_they_go_in_order() -> (
    None
):
    # 4 requests a second, one at a time: the first caller goes at once, the 50 others wait
    requests = TokenBucket(4, per=1.0, burst=1)
    step = Step(
        lambda request: rate_limited(3.0) if tag_of(request) == "first" else outcome(request)
    )
    layer = ProviderQuotaLayer(requests=requests, learn=False)
    model = layer.layer(step)
    tags = [f"c{n:02}" for n in range(50)]
    errors: list[BaseException] = []

    async def first() -> None:
        try:
            await model(ask("first"))
        except RateLimited as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await wait_all_tasks_blocked()
        await start_all(tg, model, tags)
    assert len(errors) == 1  # the failing call's error still propagates
    assert step.sent[0] == (0.0, "first")
    # nothing is sent during the 3 seconds; then the budget refills from empty, in order
    assert step.tags()[1:] == tags
    assert step.times()[1:] == [3.0 + 0.25 * n for n in range(1, 51)]
    stats = layer.statistics()
    assert (stats.rate_limited, stats.paused, stats.pause_left) == (1, 3.0, 0.0)


async def test_a_429_pauses_the_herd_waiting_behind_the_call_that_learns_the_limits() -> None:
    info = RateLimitInfo(limit_requests=600, remaining_requests=599)
    answers: list[Answer] = [rate_limited(3.0)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request, info=info))
    layer = ProviderQuotaLayer(per=60.0)  # no numbers: learned from the first answer
    model = layer.layer(step)
    tags = [f"c{n:02}" for n in range(50)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(_swallow, model, "first")
        await wait_all_tasks_blocked()
        await start_all(tg, model, tags)
    assert step.sent[0] == (0.0, "first")
    # c00 learns the limits alone once the pause is over; the others follow at once, in order
    assert step.sent[1] == (3.0, "c00")
    assert step.tags()[1:] == tags
    assert set(step.times()[1:]) == {3.0}
    assert layer.statistics().requests_limit == 600


async def _swallow(model: Service[ChatRequest, Any], tag: str) -> None:
    with contextlib.suppress(RateLimited):
        await model(ask(tag))


async def test_a_retry_outside_waits_its_turn_behind_the_callers_already_waiting() -> None:
    requests = TokenBucket(4, per=1.0, burst=1)
    failed: list[bool] = []

    def answer(request: ChatRequest) -> Answer:
        if tag_of(request) == "first" and not failed:
            failed.append(True)
            return rate_limited(3.0)
        return outcome(request)

    step = Step(answer)
    model = (
        ServiceBuilder()
        .retry(RetryPolicy(3, retry_on=is_retryable, backoff=ConstantBackoff(0.0)))
        .provider_quota(requests=requests, learn=False)
        .service(step)
    )
    tags = [f"c{n}" for n in range(5)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(model, ask("first"))
        await wait_all_tasks_blocked()
        await start_all(tg, model, tags)
    assert step.tags() == ["first", *tags, "first"]
    assert step.times() == [0.0, 3.25, 3.5, 3.75, 4.0, 4.25, 4.5]


async def test_429s_of_several_callers_at_once_pause_once() -> None:
    step = Step(lambda request: rate_limited(3.0), latency=1.0)
    layer = ProviderQuotaLayer(learn=False)
    model = layer.layer(step)
    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(_swallow, model, str(n))
    stats = layer.statistics()
    assert stats.rate_limited == 10
    assert stats.paused == 3.0  # ten answers at t=1, one pause to t=4
    with pytest.raises(RateLimited):
        await model(ask("late"))  # arrives at t=1, as the pause begins
    assert step.times()[-1] == 4.0


async def test_a_429_that_says_nothing_pauses_one_second_doubling_while_429s_follow() -> None:
    answers: list[Answer] = [rate_limited(None), rate_limited(None), rate_limited(None)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request))
    model = ProviderQuotaLayer(learn=False).layer(step)
    for _ in range(3):
        with pytest.raises(RateLimited):
            await model(ask("x"))
    await model(ask("ok"))  # a success ends the run of 429s: the next pause is 1 s again
    answers.append(rate_limited(None))
    with pytest.raises(RateLimited):
        await model(ask("x"))
    await model(ask("ok"))
    assert step.times() == [0.0, 1.0, 3.0, 7.0, 7.0, 8.0]


async def test_a_hopeless_429_does_not_pause() -> None:
    answers: list[Answer] = [RateLimited("insufficient_quota", retryable=False, retry_after=9.0)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request))
    layer = ProviderQuotaLayer(learn=False)
    model = layer.layer(step)
    with pytest.raises(RateLimited):
        await model(ask("x"))
    await model(ask("y"))
    assert step.times() == [0.0, 0.0]
    assert (layer.statistics().rate_limited, layer.statistics().paused) == (1, 0.0)


async def test_a_retry_after_longer_than_max_pause_pauses_max_pause() -> None:
    answers: list[Answer] = [rate_limited(86_400.0)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request))
    model = ProviderQuotaLayer(learn=False, max_pause=60.0).layer(step)
    with pytest.raises(RateLimited):
        await model(ask("x"))
    await model(ask("y"))
    assert step.times() == [0.0, 60.0]


async def test_other_errors_do_not_pause() -> None:
    answers: list[Answer] = [ProviderUnavailable("503", retryable=True, retry_after=5.0)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request))
    model = ProviderQuotaLayer(learn=False).layer(step)
    with pytest.raises(ProviderUnavailable):
        await model(ask("x"))
    await model(ask("y"))
    assert step.times() == [0.0, 0.0]


async def test_the_pause_empties_a_shared_bucket_for_its_other_users() -> None:
    bucket = TokenBucket(8, per=1.0)  # full: 8 requests
    quota_step = Step(lambda request: rate_limited(2.0))
    plain_step = Step()
    quota = ProviderQuotaLayer(requests=bucket, learn=False).layer(quota_step)
    plain = RateLimitLayer(limiter=bucket).layer(plain_step)  # another layer, same budget
    with pytest.raises(RateLimited):
        await quota(ask("x"))
    assert bucket.statistics().tokens == -16  # holds nothing for 2 seconds
    await plain(ask("y"))
    assert plain_step.times() == [2.125]


async def test_the_pause_reads_a_shared_backend_afresh_and_charges_what_it_holds_and_refills() -> (
    None
):
    backend = Backend()  # 10 a second
    backend.level = 30.0
    step = Step(lambda request: rate_limited(2.0))
    model = ProviderQuotaLayer(requests=backend, learn=False).layer(step)
    with pytest.raises(RateLimited):
        await model(ask("x"))
    # one request taken (29 left), a fresh look, then 29 + 2 s x 10 charged
    assert backend.calls == [("acquire", 1.0), ("try_acquire", 0.0), ("charge", 49.0)]
    assert backend.level == -20.0


async def test_try_ready_is_false_while_the_quota_is_paused() -> None:
    answers: list[Answer] = [rate_limited(3.0)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request))
    model = ProviderQuotaLayer(learn=False).layer(step)
    assert await model.try_ready()
    with pytest.raises(RateLimited):
        await model(ask("x"))
    assert not await model.try_ready()
    await anyio.sleep(3.0)
    assert await model.try_ready()


async def test_load_shedding_refuses_a_paused_quota_at_once() -> None:
    answers: list[Answer] = [rate_limited(3.0)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request))
    model = ServiceBuilder().load_shed().provider_quota(learn=False).service(step)
    with pytest.raises(RateLimited):
        await model(ask("x"))
    with pytest.raises(Overloaded):
        await model(ask("y"))
    assert anyio.current_time() == 0.0


# -- learning ---------------------------------------------------------------------------------


async def test_with_no_numbers_the_first_call_goes_alone_and_its_headers_set_the_budgets() -> None:
    info = RateLimitInfo(
        limit_requests=120, remaining_requests=3, limit_tokens=60_000, remaining_tokens=59_000
    )
    step = Step(lambda request: outcome(request, usage=100, info=info), latency=1.0)
    layer = ProviderQuotaLayer(estimate=fixed(10), reserve=0.0)  # per minute
    model = layer.layer(step)
    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(model, ask(str(n)))
    # the first alone; at t=1 the budgets are known: 3 requests remain, then one each 0.5 s
    assert step.times() == [0.0, 1.0, 1.0, 1.0, 1.5, 2.0]
    stats = layer.statistics()
    assert (stats.requests_limit, stats.tokens_limit) == (120, 60_000)
    assert (stats.learned_requests, stats.learned_tokens) == (120, 60_000)


async def test_an_answer_without_headers_opens_a_budget_that_was_being_learned() -> None:
    step = Step(lambda request: outcome(request), latency=1.0)
    layer = ProviderQuotaLayer()
    model = layer.layer(step)
    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(model, ask(str(n)))
    assert step.times() == [0.0, 1.0, 1.0, 1.0]  # no limit reported: no limit
    assert layer.statistics().requests_limit is None


async def test_a_call_that_learns_nothing_hands_the_learning_to_the_next() -> None:
    info = RateLimitInfo(limit_requests=60, remaining_requests=60)
    answers: list[Answer] = [ProviderUnavailable("503", retryable=True)]
    step = Step(
        lambda request: answers.pop(0) if answers else outcome(request, info=info), latency=1.0
    )
    model = ProviderQuotaLayer().layer(step)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_fail_quietly, model, "0")
        await wait_all_tasks_blocked()
        for n in range(1, 4):
            tg.start_soon(model, ask(str(n)))
    assert step.times() == [0.0, 1.0, 2.0, 2.0]


async def _fail_quietly(model: Service[ChatRequest, Any], tag: str) -> None:
    with contextlib.suppress(ProviderUnavailable):
        await model(ask(tag))


async def test_a_cancelled_learning_call_hands_the_learning_to_the_next() -> None:
    info = RateLimitInfo(limit_requests=60, remaining_requests=60)
    step = Step(lambda request: outcome(request, info=info), latency=1.0)
    model = ProviderQuotaLayer().layer(step)
    with anyio.move_on_after(0.5):
        await model(ask("cancelled"))
    await model(ask("next"))
    assert step.sent == [(0.0, "cancelled"), (0.5, "next")]


async def test_the_learned_limit_goes_up_and_down_with_what_the_provider_reports() -> None:
    limits = iter([4, 4, 1, 1])
    step = Step(lambda request: outcome(request, info=RateLimitInfo(limit_requests=next(limits))))
    layer = ProviderQuotaLayer(requests=2, per=1.0, reserve=0.0)
    model = layer.layer(step)
    await model(ask("a"))  # a bucket of 2 a second, now of 4, holding what it held: 1
    assert layer.statistics().requests_limit == 4
    await model(ask("b"))
    await model(ask("c"))  # a quarter second later; then the limit falls to 1 a second
    assert layer.statistics().requests_limit == 1
    await model(ask("d"))
    assert step.times() == [0.0, 0.0, 0.25, 1.25]


async def test_the_head_waiting_in_the_old_bucket_moves_to_the_new_one() -> None:
    # 1 request per 10 s: b waits 10 s; a's answer says 600 a minute, so b goes at once
    info = RateLimitInfo(limit_requests=600, remaining_requests=599)
    step = Step(lambda request: outcome(request, info=info), latency=1.0)
    model = ProviderQuotaLayer(requests=6, per=60.0).layer(step)
    async with anyio.create_task_group() as tg:
        tg.start_soon(model, ask("a"))
        await wait_all_tasks_blocked()
        tg.start_soon(model, ask("b"))
    await model(ask("c"))
    assert step.sent[:2] == [(0.0, "a"), (1.0, "b")]


async def test_never_more_is_admitted_than_the_provider_says_remains() -> None:
    info = RateLimitInfo(limit_tokens=1000, remaining_tokens=100)
    step = Step(lambda request: outcome(request, usage=300, info=info))
    # 100 tokens a second, full (1000): the provider says only 100 remain after the first
    layer = ProviderQuotaLayer(tokens=1000, per=10.0, estimate=fixed(300), reserve=0.0)
    model = layer.layer(step)
    await model(ask("a"))
    assert layer.statistics().tokens_available == 100
    await model(ask("b"))
    assert step.times() == [0.0, 2.0]  # 200 more tokens, 2 seconds


async def test_a_remaining_level_above_the_local_one_changes_nothing() -> None:
    info = RateLimitInfo(limit_tokens=1000, remaining_tokens=1000)
    step = Step(lambda request: outcome(request, usage=300, info=info))
    layer = ProviderQuotaLayer(tokens=1000, per=10.0, estimate=fixed(300), reserve=0.0)
    await layer.layer(step)(ask("a"))
    assert layer.statistics().tokens_available == 700


async def test_the_reserve_holds_back_a_share_of_every_learned_budget() -> None:
    remaining = iter([700, 700, 100, 100])
    step = Step(
        lambda request: outcome(
            request,
            usage=100,
            info=RateLimitInfo(limit_tokens=1000, remaining_tokens=next(remaining)),
        )
    )
    layer = ProviderQuotaLayer(tokens=1000, per=10.0, estimate=fixed(100), reserve=0.2)
    model = layer.layer(step)
    await model(ask("a"))  # a bucket made from a number starts 20 % short: 800 - 100
    assert layer.statistics().tokens_available == 700 - 200  # what remains, less 200
    await model(ask("b"))
    assert layer.statistics().tokens_available == 400  # 700 - 200 is more: never raised
    await model(ask("c"))
    assert layer.statistics().tokens_available == 100 - 200  # in debt: the next waits
    await model(ask("d"))
    assert step.times() == [0.0, 0.0, 0.0, 2.0]


async def test_a_reserve_needs_learning() -> None:
    info = RateLimitInfo(limit_tokens=1000, remaining_tokens=1000)
    step = Step(lambda request: outcome(request, usage=100, info=info))
    layer = ProviderQuotaLayer(tokens=1000, per=10.0, estimate=fixed(100), learn=False)
    await layer.layer(step)(ask("a"))
    assert layer.statistics().tokens_available == 900


async def test_a_bucket_you_give_keeps_its_rate_but_is_lowered_to_what_remains() -> None:
    bucket = TokenBucket(100, per=1.0, burst=1000)
    info = RateLimitInfo(limit_tokens=5000, remaining_tokens=50)
    step = Step(lambda request: outcome(request, usage=10, info=info))
    layer = ProviderQuotaLayer(tokens=bucket, estimate=fixed(10), reserve=0.0)
    await layer.layer(step)(ask("a"))
    assert (bucket.rate, bucket.statistics().tokens) == (100, 50)
    assert layer.statistics().learned_tokens == 5000


async def test_a_shared_backend_out_of_process_is_not_lowered() -> None:
    backend = Backend()
    info = RateLimitInfo(limit_tokens=5000, remaining_tokens=50)
    step = Step(lambda request: outcome(request, usage=10, info=info))
    await ProviderQuotaLayer(tokens=backend, estimate=fixed(10)).layer(step)(ask("a"))
    assert backend.calls == [("acquire", 10)]


async def test_without_learn_the_headers_change_nothing() -> None:
    info = RateLimitInfo(limit_requests=1, remaining_requests=0)
    step = Step(lambda request: outcome(request, info=info))
    layer = ProviderQuotaLayer(requests=10, per=1.0, learn=False)
    model = layer.layer(step)
    for _ in range(3):
        await model(ask("x"))
    assert step.times() == [0.0, 0.0, 0.0]
    assert layer.statistics().learned_requests is None


async def test_a_429_teaches_what_its_headers_report() -> None:
    info = RateLimitInfo(limit_requests=60, remaining_requests=0)
    answers: list[Answer] = [rate_limited(1.0, rate_limits=info)]
    step = Step(lambda request: answers.pop(0) if answers else outcome(request))
    layer = ProviderQuotaLayer(per=60.0)
    model = layer.layer(step)
    with pytest.raises(RateLimited):
        await model(ask("x"))
    assert layer.statistics().requests_limit == 60
    await model(ask("y"))
    assert step.times() == [0.0, 2.0]  # 1 s of pause, then a request's refill: 1 s


# -- sharing, cancellation, construction ----------------------------------------------------


async def test_every_service_of_one_layer_shares_its_quota() -> None:
    layer = ProviderQuotaLayer(requests=1, per=1.0, learn=False)
    one, two = Step(), Step()
    await layer.layer(one)(ask("a"))
    await layer.layer(two)(ask("b"))
    assert (one.times(), two.times()) == ([0.0], [1.0])
    assert layer.layer(one).statistics() == layer.statistics()


async def test_a_caller_cancelled_while_waiting_gives_everything_back() -> None:
    requests = TokenBucket(1, per=10.0)
    tokens = TokenBucket(100, per=1.0)
    step = Step()
    model = ProviderQuotaLayer(requests=requests, tokens=tokens, estimate=fixed(60)).layer(step)
    await model(ask("a"))  # both budgets now short: the next waits 10 s for its request
    with anyio.move_on_after(5.0):
        await model(ask("cancelled"))
    assert step.tags() == ["a"]
    assert requests.statistics().waiting == tokens.statistics().waiting == 0
    # nothing of the cancelled call was kept: the next call takes the request at t=10
    await model(ask("b"))
    assert step.sent[-1] == (10.0, "b")
    assert tokens.statistics().tokens == 100 - 60


async def test_a_caller_cancelled_at_the_gate_leaves_its_place() -> None:
    requests = TokenBucket(1, per=1.0)
    step = Step()
    model = ProviderQuotaLayer(requests=requests, learn=False).layer(step)
    await model(ask("a"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(model, ask("head"))
        await wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_soon, scope)
            await model(ask("cancelled"))
        tg.start_soon(model, ask("c"))
    gc.collect()
    assert step.tags() == ["a", "head", "c"]
    assert step.times() == [0.0, 1.0, 2.0]


async def _cancel_soon(scope: anyio.CancelScope) -> None:
    await wait_all_tasks_blocked()
    scope.cancel()


async def test_a_call_refused_further_in_gets_its_tokens_back() -> None:
    inner, handle = mock_service()
    handle.allow(0)  # never ready: the load shedder refuses at once
    tokens = TokenBucket(100, per=1.0)
    model = (
        ServiceBuilder()
        .load_shed()
        .provider_quota(tokens=tokens, estimate=fixed(30), learn=False)
        .service(inner)
    )
    with pytest.raises(Overloaded):
        await model(ask("x"))
    assert tokens.statistics().tokens == 100


def test_the_builder_shorthand_adds_the_layer() -> None:
    bucket = TokenBucket(5)
    [layer] = ServiceBuilder().provider_quota(requests=bucket, tokens=1000, per=1.0).layers
    assert isinstance(layer, ProviderQuotaLayer)
    service = layer.layer(Step())
    assert isinstance(service, ProviderQuota)
    assert repr(layer) == f"ProviderQuotaLayer(requests={bucket!r}, tokens=1000)"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"requests": "500"}, TypeError, "requests must be a number"),
        ({"tokens": True}, TypeError, "tokens must be a number"),
        ({"requests": 0}, ValueError, "requests"),
        ({"tokens": float("inf")}, ValueError, "tokens"),
        ({"requests": 0.5}, ValueError, "less than one request"),
        ({"requests": TokenBucket(1, per=2.0, burst=0.5)}, ValueError, "less than one request"),
        ({"per": 0}, ValueError, "per"),
        ({"estimate": 42}, TypeError, "estimate must be a function"),
        ({"learn": "yes"}, TypeError, "learn must be True or False"),
        ({"max_pause": -1}, ValueError, "max_pause"),
        ({"reserve": 1.0}, ValueError, "reserve must be a fraction"),
        ({"reserve": -0.1}, ValueError, "reserve must be a fraction"),
        ({"reserve": "10%"}, TypeError, "reserve must be a fraction"),
    ],
)
def test_bad_arguments_are_refused_when_the_layer_is_made(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ProviderQuotaLayer(**options)
    with pytest.raises(error, match=message):
        ServiceBuilder().provider_quota(**options)


def test_an_async_estimate_is_refused() -> None:
    async def estimate(request: ChatRequest) -> float:
        return 1.0

    with pytest.raises(TypeError, match="plain"):
        ProviderQuotaLayer(estimate=estimate)  # type: ignore[arg-type]
