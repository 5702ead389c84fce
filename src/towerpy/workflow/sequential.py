"""Sequential: each step's output is the next step's input."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, final, overload

from typing_extensions import override

from .._service import Service
from ._steps import EntersSteps, Steps, check_steps, short_repr

__all__ = ["Sequential"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")


@final
class Sequential(EntersSteps, Service[ReqT, RespT], Generic[ReqT, RespT], direct_call=True):
    """Runs its steps one after the other, each on the previous step's output.

    ``call(request)`` sends ``request`` to the first step, its output to the second, and so on;
    it returns the last step's output. A step is any service: an `Agent`, a tool, a model, a
    service wrapped in layers, another workflow. A step's exception propagates unchanged and
    the steps after it never run; cancelling the call cancels the step running.

    ``ready()`` is the first step's (it reserves what the first call needs); each later step
    is readied when its turn comes. ``async with`` enters every step (each once, in order).

    Two agents in a row need the first one's answer as the second one's prompt:
    ``Sequential(researcher, MapRequest(writer, lambda result: result.output))``, or
    ``MapResponse(researcher, lambda result: result.output)`` as the first step.

    Args:
        *steps: The services, in order: at least one.

    Raises:
        ValueError: No step.
        TypeError: A step is not a `Service`.
    """

    __slots__ = ("_steps", "steps")

    @overload
    def __init__(self: Sequential[A, B], step1: Service[A, B], /) -> None: ...
    @overload
    def __init__(self: Sequential[A, C], step1: Service[A, B], step2: Service[B, C], /) -> None: ...
    @overload
    def __init__(
        self: Sequential[A, D],
        step1: Service[A, B],
        step2: Service[B, C],
        step3: Service[C, D],
        /,
    ) -> None: ...
    @overload
    def __init__(
        self: Sequential[A, E],
        step1: Service[A, B],
        step2: Service[B, C],
        step3: Service[C, D],
        step4: Service[D, E],
        /,
    ) -> None: ...
    @overload
    def __init__(
        self: Sequential[A, F],
        step1: Service[A, B],
        step2: Service[B, C],
        step3: Service[C, D],
        step4: Service[D, E],
        step5: Service[E, F],
        /,
    ) -> None: ...
    @overload
    def __init__(  # six or more: typed from the first request to the last response only
        self: Sequential[A, F],
        step1: Service[A, Any],
        step2: Service[Any, Any],
        step3: Service[Any, Any],
        step4: Service[Any, Any],
        step5: Service[Any, Any],
        step6: Service[Any, F],
        /,
        *steps: Service[Any, Any],
    ) -> None: ...
    def __init__(self, *steps: Service[Any, Any]) -> None:
        self.steps = check_steps("Sequential", steps)
        self._steps = Steps(self.steps)

    @override
    async def ready(self) -> None:
        await self.steps[0].ready()

    @override
    async def try_ready(self) -> bool:
        return await self.steps[0].try_ready()

    @override
    def drop_reservation(self) -> None:
        self.steps[0].drop_reservation()

    @override
    async def call(self, request: ReqT) -> RespT:
        value: Any = request
        for step in self.steps:
            value = await step(value)
        result: RespT = value
        return result

    def __repr__(self) -> str:
        return f"Sequential({', '.join(map(short_repr, self.steps))})"
