"""Parallel: the same input to every step, the outputs as a list in step order."""

from __future__ import annotations

import contextlib
from typing import Any, Generic, Literal, TypeVar, final, overload

from typing_extensions import override

from .._service import Service
from .._validate import check_positive_int
from ..tools._join import Join, JoinPolicy
from ._steps import EntersSteps, Steps, check_policy, check_steps, note_failures, short_repr

__all__ = ["Parallel"]

ReqT = TypeVar("ReqT")
OutT = TypeVar("OutT")
# the overloads' own type variables: pyright solves a self type only with these
ReqV = TypeVar("ReqV")
OutV = TypeVar("OutV")


def _isolate(index: int, error: Exception) -> Exception:
    return error  # a step's failure stays in its place in the list


@final
class Parallel(EntersSteps, Service[ReqT, list[OutT]], Generic[ReqT, OutT]):
    """Sends the same input to every step at once; returns their outputs in step order.

    The steps run concurrently, at most ``limit`` at once (default: all of them), in the
    calling task and helper tasks started only when a step waits, exactly as
    `ParallelToolRouter` runs a batch of tool calls, and a failure does what the policy says,
    as it does there:

    - `JoinPolicy.JOIN_ALL` (the default) waits for every step, then raises the exception of
      the earliest failed step in step order, unchanged, with every outcome attached to it as
      ``step_outcomes`` (an output or the exception, per step) and a note naming the failed
      steps.
    - `JoinPolicy.FAIL_FAST` cancels the steps still running or waiting at the first failure
      and raises it; nothing keeps running once ``call()`` has returned.
    - `JoinPolicy.ISOLATE` never raises for a step's failure: its place in the list holds the
      exception, the others are unaffected.

    A step that raises anyio's cancellation exception although nothing cancelled it fails with
    a `RuntimeError`; cancelling ``call()`` cancels every step. ``ready()`` returns at once:
    each step waits for its own capacity when it runs. ``async with`` enters every step.

    Args:
        *steps: The services: at least one.
        limit: The most steps running at once, or None for all of them.
        policy: What a step's failure does.

    Raises:
        ValueError: No step, or ``limit`` below 1.
        TypeError: A step is not a `Service`, ``policy`` not a `JoinPolicy`.
    """

    __slots__ = ("_steps", "limit", "policy", "steps")

    @overload
    def __init__(
        self: Parallel[ReqV, OutV],
        *steps: Service[ReqV, OutV],
        limit: int | None = None,
        policy: Literal[JoinPolicy.JOIN_ALL, JoinPolicy.FAIL_FAST] = JoinPolicy.JOIN_ALL,
    ) -> None: ...
    @overload
    def __init__(
        self: Parallel[ReqV, OutV | Exception],
        *steps: Service[ReqV, OutV],
        limit: int | None = None,
        policy: Literal[JoinPolicy.ISOLATE],
    ) -> None: ...
    @overload
    def __init__(  # a policy known only at run time: a failure may be in the list
        self: Parallel[ReqV, OutV | Exception],
        *steps: Service[ReqV, OutV],
        limit: int | None = None,
        policy: JoinPolicy,
    ) -> None: ...
    def __init__(
        self,
        *steps: Service[Any, Any],
        limit: int | None = None,
        policy: JoinPolicy = JoinPolicy.JOIN_ALL,
    ) -> None:
        self.steps = check_steps("Parallel", steps)
        if limit is not None:
            check_positive_int("limit", limit)
        self.limit = limit
        self.policy = check_policy(policy)
        self._steps = Steps(self.steps)

    @override
    async def call(self, request: ReqT) -> list[OutT]:
        steps = self.steps
        limit = len(steps) if self.limit is None else self.limit
        join = Join(steps, lambda step: step(request), limit, self.policy, _isolate, self._label)
        await join.run(0, len(steps))
        error = join.error
        if error is None:
            return join.outputs
        if self.policy is JoinPolicy.JOIN_ALL:
            outcomes = [join.errors.get(i, output) for i, output in enumerate(join.outputs)]
            with contextlib.suppress(AttributeError, TypeError):  # a class with __slots__
                error.step_outcomes = outcomes  # type: ignore[attr-defined]
            names = [
                f"{self._label(i)}: {type(e).__name__}" for i, e in sorted(join.errors.items())
            ]
            note_failures(error, "Parallel", names, len(steps), "steps", "step_outcomes")
        raise error

    def _label(self, index: int) -> str:
        return f"step {index} ({short_repr(self.steps[index])})"

    def __repr__(self) -> str:
        limit = "" if self.limit is None else f", limit={self.limit}"
        steps = ", ".join(map(short_repr, self.steps))
        return f"Parallel({steps}{limit}, policy={self.policy.name})"
