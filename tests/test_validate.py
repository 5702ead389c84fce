"""One rule for bad arguments: TypeError for a wrong type, ValueError for a bad value, named."""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from towerpy import (
    Buffer,
    BufferLayer,
    ConcurrencyLimit,
    ConcurrencyLimiter,
    ConcurrencyLimitLayer,
    ConstantBackoff,
    ExponentialBackoff,
    KeyedConcurrencyLimitLayer,
    RateLimitLayer,
    RetryBudget,
    RetryLayer,
    RetryPolicy,
    ServiceBuilder,
    Timeout,
    TimeoutLayer,
    TokenBucket,
    layer_fn,
    service_fn,
)
from towerpy._validate import (
    check_exact_number,
    check_exception_matcher,
    check_int,
    check_member,
    check_number,
    check_seconds,
)
from towerpy.llm import (
    Agent,
    AnthropicModel,
    OpenAIChatModel,
    ParallelToolsLayer,
    ScriptedModel,
)
from towerpy.llm._select import model_from_spec
from towerpy.testing import ServiceContract, VirtualTimeEventLoop, mock_service
from towerpy.tools import Bash, JoinPolicy, ParallelToolRouter, ThreadLimiter, ToolRouter, tool


async def _echo(request: object) -> object:
    return request


def _inner() -> Any:
    return service_fn(_echo)


async def _documented() -> None:
    """Does nothing."""


def wrong(value: object) -> Any:
    """Passes ``value`` where the type checker would refuse it: the point of these tests."""
    return value


Make = Callable[[], object]

# (what to build, the argument it gets wrong): each builds one public object with one argument of
# the wrong type, or of the right type and a bad value
WRONG_TYPES: list[tuple[str, Make]] = [
    ("max_in_flight", lambda: ConcurrencyLimitLayer(wrong("3"))),
    ("max_in_flight", lambda: ConcurrencyLimitLayer(True)),
    ("max_in_flight", lambda: ConcurrencyLimiter(wrong(2.0))),
    ("max_in_flight", lambda: ConcurrencyLimit(_inner(), wrong("3"))),
    ("max_in_flight", lambda: ServiceBuilder().concurrency_limit(wrong("3"))),
    ("limiter", lambda: ConcurrencyLimitLayer(limiter=wrong(3))),
    ("key", lambda: KeyedConcurrencyLimitLayer(wrong("name"), {})),
    ("limits", lambda: KeyedConcurrencyLimitLayer(str, wrong([("a", 1)]))),
    ("limits['a']", lambda: KeyedConcurrencyLimitLayer(str, {"a": wrong("1")})),
    ("default", lambda: KeyedConcurrencyLimitLayer(str, {}, default=wrong("1"))),
    ("rate", lambda: TokenBucket(wrong("5"))),
    ("per", lambda: TokenBucket(5, per=wrong("60"))),
    ("burst", lambda: TokenBucket(5, burst=True)),
    ("rate", lambda: RateLimitLayer(wrong("5"))),
    ("cost", lambda: RateLimitLayer(5, cost=wrong(3))),
    ("limiter", lambda: RateLimitLayer(limiter=wrong(5))),
    ("seconds", lambda: TimeoutLayer(wrong("5"))),
    ("seconds", lambda: Timeout(_inner(), wrong(None))),
    ("bound", lambda: BufferLayer(wrong("3"))),
    ("bound", lambda: Buffer(_inner(), wrong(2.0))),
    ("max_attempts", lambda: RetryPolicy(wrong("3"))),
    ("max_retry_after", lambda: RetryPolicy(max_retry_after=wrong("60"))),
    ("retry_on", lambda: RetryPolicy(retry_on=wrong(42))),
    ("backoff", lambda: RetryPolicy(backoff=wrong(0.5))),
    ("backoff", lambda: RetryPolicy(backoff=wrong(ConstantBackoff))),
    ("budget", lambda: RetryPolicy(budget=wrong(3))),
    ("policy", lambda: RetryLayer(wrong(object()))),
    ("base", lambda: ExponentialBackoff(base=wrong("1"))),
    ("factor", lambda: ExponentialBackoff(factor=wrong("2"))),
    ("max_delay", lambda: ExponentialBackoff(max_delay=wrong(None))),
    ("rng", lambda: ExponentialBackoff(rng=wrong(42))),
    ("delay", lambda: ConstantBackoff(wrong("1"))),
    ("attempt", lambda: ConstantBackoff(1).delay(wrong("1"))),
    ("ttl", lambda: RetryBudget(ttl=wrong("10"))),
    ("retry_ratio", lambda: RetryBudget(retry_ratio=True)),
    ("router", lambda: ParallelToolRouter(wrong(lambda invocation: invocation))),
    ("limit", lambda: ParallelToolRouter(ToolRouter(), wrong("3"))),
    ("policy", lambda: ParallelToolRouter(ToolRouter(), policy=wrong("isolate"))),
    ("tool_timeout", lambda: ParallelToolRouter(ToolRouter(), tool_timeout=wrong("1"))),
    ("wait_timeout", lambda: ParallelToolRouter(ToolRouter(), wait_timeout=True)),
    ("catalog", lambda: ParallelToolRouter(ToolRouter(), catalog=wrong(3))),
    ("sequential", lambda: ParallelToolRouter(ToolRouter(), sequential=wrong("search"))),
    ("limit", lambda: ParallelToolsLayer(ToolRouter(), limit=wrong(2.5))),
    ("step", lambda: Agent(wrong(lambda request: request))),
    ("tools", lambda: Agent(ScriptedModel([]), tools=wrong([]))),
    ("max_steps", lambda: Agent(ScriptedModel([]), max_steps=wrong("3"))),
    ("tool_limit", lambda: Agent(ScriptedModel([]), tool_limit=wrong("3"))),
    ("system", lambda: Agent(ScriptedModel([]), system=wrong(3))),
    ("latency", lambda: ScriptedModel([], latency=wrong("1"))),
    ("model", lambda: OpenAIChatModel(wrong(None), api_key="k")),
    ("max_tokens", lambda: OpenAIChatModel("m", api_key="k", max_tokens=wrong("5"))),
    ("sdk_max_retries", lambda: OpenAIChatModel("m", api_key="k", sdk_max_retries=wrong("2"))),
    ("params", lambda: OpenAIChatModel("m", api_key="k", params=wrong([("a", 1)]))),
    ("model", lambda: AnthropicModel(wrong(3), api_key="k")),
    ("max_tokens", lambda: AnthropicModel("m", api_key="k", max_tokens=wrong(2.5))),
    ("spec", lambda: model_from_spec(wrong(None))),
    ("fn", lambda: tool(wrong(42))),
    ("name", lambda: tool(_documented, name=wrong(3))),
    ("concurrency_limit", lambda: tool(_documented, concurrency_limit=wrong("2"))),
    ("timeout", lambda: tool(_documented, timeout=wrong("5"))),
    ("tool", lambda: ToolRouter([wrong(_documented)])),
    ("total", lambda: ThreadLimiter(wrong("4"))),
    ("timeout", lambda: Bash(timeout=wrong("30"))),
    ("max_output", lambda: Bash(max_output=wrong("1000"))),
    ("fn", lambda: service_fn(wrong(lambda request: request))),
    ("fn", lambda: layer_fn(wrong(3))),
    ("fn", lambda: ServiceBuilder().map_request(wrong(3))),
    ("make", lambda: ServiceContract(wrong(42))),
    ("n", lambda: mock_service()[1].allow(wrong("3"))),
]

BAD_VALUES: list[tuple[str, Make]] = [
    ("max_in_flight", lambda: ConcurrencyLimitLayer(0)),
    ("max_in_flight", lambda: ConcurrencyLimiter(-1)),
    ("limits['a']", lambda: KeyedConcurrencyLimitLayer(str, {"a": 0})),
    ("default", lambda: KeyedConcurrencyLimitLayer(str, {}, default=0)),
    ("rate", lambda: TokenBucket(0)),
    ("rate", lambda: TokenBucket(math.inf)),
    ("per", lambda: TokenBucket(5, per=math.nan)),
    ("burst", lambda: TokenBucket(5, burst=-1)),
    ("rate", lambda: RateLimitLayer(-5)),
    ("seconds", lambda: TimeoutLayer(-1)),
    ("seconds", lambda: Timeout(_inner(), math.nan)),
    ("bound", lambda: BufferLayer(0)),
    ("max_attempts", lambda: RetryPolicy(0)),
    ("max_retry_after", lambda: RetryPolicy(max_retry_after=-1)),
    ("base", lambda: ExponentialBackoff(base=-0.1)),
    ("factor", lambda: ExponentialBackoff(factor=0.5)),
    ("max_delay", lambda: ExponentialBackoff(max_delay=math.inf)),
    ("delay", lambda: ConstantBackoff(-1)),
    ("attempt", lambda: ExponentialBackoff().delay(0)),
    ("ttl", lambda: RetryBudget(ttl=0)),
    ("min_per_second", lambda: RetryBudget(min_per_second=-1)),
    ("retry_ratio", lambda: RetryBudget(retry_ratio=math.inf)),
    ("limit", lambda: ParallelToolRouter(ToolRouter(), 0)),
    ("tool_timeout", lambda: ParallelToolRouter(ToolRouter(), tool_timeout=0)),
    ("wait_timeout", lambda: ParallelToolRouter(ToolRouter(), wait_timeout=math.inf)),
    ("limit", lambda: ParallelToolsLayer(ToolRouter(), limit=-1)),
    ("max_steps", lambda: Agent(ScriptedModel([]), max_steps=0)),
    ("tool_limit", lambda: Agent(ScriptedModel([]), tool_limit=0)),
    ("latency", lambda: ScriptedModel([], latency=-1)),
    ("model", lambda: OpenAIChatModel("", api_key="k")),
    ("max_tokens", lambda: OpenAIChatModel("m", api_key="k", max_tokens=0)),
    ("sdk_max_retries", lambda: AnthropicModel("m", api_key="k", sdk_max_retries=-1)),
    ("name", lambda: tool(_documented, name="has space")),
    ("concurrency_limit", lambda: tool(_documented, concurrency_limit=0)),
    ("timeout", lambda: tool(_documented, timeout=math.inf)),
    ("total", lambda: ThreadLimiter(0)),
    ("timeout", lambda: Bash(timeout=0)),
    ("max_output", lambda: Bash(max_output=1)),
    ("n", lambda: mock_service()[1].allow(-1)),
]


def _naming(argument: str) -> str:
    """A pattern that finds ``argument`` as a name in a message, not inside another name."""
    return rf"(?<![\w.]){re.escape(argument)}(?!\w)"


@pytest.mark.parametrize(("argument", "make"), WRONG_TYPES, ids=[n for n, _ in WRONG_TYPES])
def test_an_argument_of_the_wrong_type_raises_type_error_naming_it(
    argument: str, make: Make
) -> None:
    with pytest.raises(TypeError, match=_naming(argument)):
        make()


@pytest.mark.parametrize(("argument", "make"), BAD_VALUES, ids=[n for n, _ in BAD_VALUES])
def test_an_argument_with_a_bad_value_raises_value_error_naming_it(
    argument: str, make: Make
) -> None:
    with pytest.raises(ValueError, match=_naming(argument)):
        make()


def test_a_virtual_clock_jump_follows_the_rule() -> None:
    loop = VirtualTimeEventLoop()
    try:
        with pytest.raises(TypeError, match=r"^seconds must be a number of seconds >= 0, got bool"):
            loop.jump(True)
        with pytest.raises(ValueError, match=r"^seconds must be a number of seconds >= 0, got -1"):
            loop.jump(-1)
        assert loop.time() == 0
    finally:
        loop.close()


@pytest.mark.anyio
async def test_a_prompt_of_the_wrong_type_raises_type_error() -> None:
    agent = Agent(ScriptedModel([]))
    with pytest.raises(TypeError, match=r"^prompt must be a str or a list of Message, got int$"):
        await agent.run(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty list of Message"):
        await agent.run([])


# ---- the helpers themselves ---------------------------------------------------------------------


def test_messages_say_what_the_argument_must_be_and_what_it_got() -> None:
    with pytest.raises(TypeError, match=r"^limit must be an int >= 1, got str '3'$"):
        check_int("limit", "3", minimum=1)
    with pytest.raises(ValueError, match=r"^limit must be >= 1, got 0$"):
        check_int("limit", 0, minimum=1)
    with pytest.raises(TypeError, match=r"^timeout must be a finite number of seconds > 0, got"):
        check_seconds("timeout", True, positive=True, finite=True)
    with pytest.raises(ValueError, match=r"^timeout must be a number of seconds >= 0, got NaN$"):
        check_seconds("timeout", math.nan)
    with pytest.raises(ValueError, match=r"^factor must be a finite number >= 1, got 0.5$"):
        check_number("factor", 0.5, minimum=1)


def test_seconds_allow_infinity_unless_asked_not_to() -> None:
    assert check_seconds("seconds", math.inf) == math.inf
    assert check_seconds("seconds", 0) == 0.0
    with pytest.raises(ValueError, match="finite"):
        check_seconds("seconds", math.inf, finite=True)
    with pytest.raises(ValueError, match="> 0"):
        check_seconds("seconds", 0, positive=True)
    assert type(check_seconds("seconds", Fraction(1, 2))) is float


def test_an_int_too_large_for_a_float_counts_as_infinite() -> None:
    with pytest.raises(ValueError, match="finite"):
        check_number("n", 10**400)
    assert check_seconds("seconds", 10**400) == math.inf


def test_exact_numbers_are_read_as_written() -> None:
    assert check_exact_number("ratio", 0.3) == Fraction(3, 10)
    assert check_exact_number("ratio", Decimal("0.3")) == Fraction(3, 10)
    assert check_exact_number("ratio", Fraction(1, 3)) == Fraction(1, 3)
    assert check_exact_number("ratio", 2) == 2
    with pytest.raises(ValueError, match=r"^ttl must be a finite number > 0, got 0$"):
        check_exact_number("ttl", 0, positive=True)
    with pytest.raises(ValueError, match="ratio"):
        check_exact_number("ratio", Decimal("NaN"))
    with pytest.raises(TypeError, match="ratio"):
        check_exact_number("ratio", "0.3")


def test_an_enum_argument_lists_its_members() -> None:
    assert check_member("policy", JoinPolicy.ISOLATE, JoinPolicy) is JoinPolicy.ISOLATE
    with pytest.raises(TypeError, match=r"^policy must be a JoinPolicy \(.*JoinPolicy\.ISOLATE"):
        check_member("policy", "ISOLATE", JoinPolicy)


class _Flaky(Exception):
    pass


@pytest.mark.parametrize(
    "matcher", [_Flaky, (_Flaky,), (ValueError, _Flaky), lambda exc: isinstance(exc, _Flaky)]
)
def test_an_exception_matcher_becomes_a_predicate(matcher: Any) -> None:
    matches = check_exception_matcher("on", matcher)
    assert matches(_Flaky())
    assert not matches(KeyError())


def test_an_exception_matcher_of_an_empty_tuple_selects_nothing() -> None:
    assert not check_exception_matcher("on", ())(ValueError())


def test_an_exception_matcher_function_is_returned_as_it_is() -> None:
    def predicate(exc: BaseException) -> bool:
        return False

    assert check_exception_matcher("on", predicate) is predicate


def test_an_exception_matcher_does_not_exclude_cancellation() -> None:
    # the caller decides: RetryPolicy never retries a BaseException, whatever retry_on says
    assert check_exception_matcher("on", BaseException)(asyncio.CancelledError())
    assert not RetryPolicy(retry_on=BaseException).is_retryable(asyncio.CancelledError())


async def _async_predicate(exc: BaseException) -> bool:
    return True


@pytest.mark.parametrize(
    ("matcher", "message"),
    [
        (
            int,
            r"^failure_on must be an exception class, a tuple of them, or a plain function .*"
            r"got the class int$",
        ),
        ((ValueError, "oops"), r"^failure_on must hold exception classes only, got 'oops' in it$"),
        ([ValueError], r"^failure_on must be an exception class, .*got list \[<class"),
        (ValueError(), r"^failure_on must be an exception class, .*got ValueError ValueError\(\)$"),
        (
            _async_predicate,
            r"^failure_on must be a plain function that returns a bool, got the "
            r"async function '_async_predicate'$",
        ),
    ],
)
def test_a_bad_exception_matcher_raises_type_error_naming_it(matcher: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        check_exception_matcher("failure_on", matcher)


def test_retry_policy_keeps_its_repr_and_choices_through_the_shared_matcher() -> None:
    policy = RetryPolicy(retry_on=ConnectionError, backoff=ConstantBackoff(0))
    assert "retry_on=(<class 'ConnectionError'>,)" in repr(policy)
    assert "retry_on=(<class 'KeyError'>, <class 'OSError'>)" in repr(
        RetryPolicy(retry_on=(KeyError, OSError))
    )
    assert policy.is_retryable(ConnectionResetError())
    assert not policy.is_retryable(ValueError())


def test_a_backoff_with_an_async_delay_is_refused() -> None:
    class Slow:
        async def delay(self, attempt: int) -> float:
            return 0.0

    with pytest.raises(TypeError, match=r"^backoff.delay\(\) must be a plain method"):
        RetryPolicy(backoff=Slow())  # type: ignore[arg-type]
    assert RetryPolicy(backoff=ExponentialBackoff(rng=random.Random(1))).backoff is not None
