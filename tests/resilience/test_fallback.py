"""Fallback: which errors go to the fallback, chains, and what is kept of the primary's error."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import (
    BufferLayer,
    CircuitOpen,
    Elapsed,
    Fallback,
    FallbackLayer,
    FallbackStatistics,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ServiceBuilder,
    ServiceClosed,
    service_fn,
)
from towerpy.testing import mock_service

pytestmark = pytest.mark.anyio


def failing(error: BaseException, calls: list[str] | None = None, name: str = "") -> Any:
    async def fail(request: Any) -> Any:
        if calls is not None:
            calls.append(name)
        raise error

    return service_fn(fail)


def answering(name: str, calls: list[str] | None = None) -> Any:
    async def answer(request: Any) -> Any:
        if calls is not None:
            calls.append(name)
        return f"{name}: {request}"

    return service_fn(answer)


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailable("503", status_code=503, retryable=True),
        RateLimited("429", status_code=429, retryable=True),
        RateLimited("quota spent", status_code=429, retryable=False),
        ProviderError("409", status_code=409, retryable=True),
        CircuitOpen("open", retry_after=3.0),
        Overloaded("shed"),
        Elapsed("timed out"),
        ConnectionError("reset"),
    ],
    ids=repr,
)
async def test_the_default_errors_send_the_request_to_the_fallback(error: Exception) -> None:
    svc = Fallback(failing(error), answering("backup"))
    assert await svc("hi") == "backup: hi"
    assert svc.statistics() == FallbackStatistics(fell_back=1, fallback_failures=0)


@pytest.mark.parametrize(
    "error",
    [ProviderError("400", status_code=400), ValueError("bad"), KeyError("k")],
    ids=repr,
)
async def test_errors_of_the_request_propagate_unchanged(error: Exception) -> None:
    calls: list[str] = []
    svc = Fallback(failing(error), answering("backup", calls))
    with pytest.raises(type(error)) as caught:
        await svc("hi")
    assert caught.value is error
    assert calls == []
    assert svc.statistics().fell_back == 0


async def test_a_primary_that_answers_is_the_answer() -> None:
    calls: list[str] = []
    svc = Fallback(answering("primary"), answering("backup", calls))
    assert await svc("hi") == "primary: hi"
    assert calls == []


async def test_cancellation_is_never_fallen_back() -> None:
    inner, handle = mock_service()
    calls: list[str] = []
    svc = Fallback(inner, answering("backup", calls))
    with anyio.move_on_after(1.0):
        await svc("hi")
    assert calls == []
    assert handle.pending == 1


async def test_the_primary_error_is_the_context_of_the_fallback_failure_and_a_note() -> None:
    primary = ProviderUnavailable("primary is down", retryable=True)
    second = ProviderUnavailable("backup is down too", retryable=True)
    svc = Fallback(failing(primary), failing(second))
    with pytest.raises(ProviderUnavailable) as caught:
        await svc("hi")
    assert caught.value is second
    assert second.__context__ is primary
    assert any("primary is down" in note for note in second.__notes__)
    assert svc.statistics() == FallbackStatistics(fell_back=1, fallback_failures=1)


async def test_the_primary_error_goes_at_the_end_of_a_chain_the_fallback_error_has() -> None:
    primary = ProviderUnavailable("primary is down", retryable=True)
    sdk = OSError("socket closed")

    async def backup(request: Any) -> Any:
        try:
            raise sdk
        except OSError as exc:
            raise ProviderUnavailable("backup failed", retryable=True) from exc

    svc = Fallback(failing(primary), service_fn(backup))
    with pytest.raises(ProviderUnavailable, match="backup failed") as caught:
        await svc("hi")
    assert caught.value.__cause__ is sdk
    assert caught.value.__context__ is sdk
    assert sdk.__context__ is primary


async def test_layers_stacked_make_a_chain_the_nearest_fallback_first() -> None:
    calls: list[str] = []
    down = ProviderUnavailable("down", retryable=True)
    svc = (
        ServiceBuilder()
        .fallback(answering("c", calls))
        .fallback(failing(down, calls, "b"))
        .service(failing(down, calls, "a"))
    )
    assert await svc("hi") == "c: hi"
    assert calls == ["a", "b", "c"]


async def test_a_nested_fallback_reads_in_order() -> None:
    calls: list[str] = []
    down = ProviderUnavailable("down", retryable=True)
    b_then_c = ServiceBuilder().fallback(answering("c", calls)).service(failing(down, calls, "b"))
    svc = ServiceBuilder().fallback(b_then_c).service(failing(down, calls, "a"))
    assert await svc("hi") == "c: hi"
    assert calls == ["a", "b", "c"]


async def test_on_takes_exception_classes_or_a_predicate() -> None:
    by_class = Fallback(failing(KeyError("k")), answering("backup"), on=(KeyError,))
    assert await by_class("x") == "backup: x"
    one_class = Fallback(failing(KeyError("k")), answering("backup"), on=KeyError)
    assert await one_class("x") == "backup: x"
    seen: list[BaseException] = []

    def predicate(error: BaseException) -> bool:
        seen.append(error)
        return "retry elsewhere" in str(error)

    svc = ServiceBuilder().fallback(answering("backup"), on=predicate)
    assert await svc.service(failing(ValueError("retry elsewhere")))("x") == "backup: x"
    with pytest.raises(ValueError, match="final"):
        await svc.service(failing(ValueError("final")))("x")
    assert len(seen) == 2


async def test_a_fallback_of_another_request_type_is_a_map_request_away() -> None:
    async def other_provider(request: dict[str, str]) -> str:
        return f"{request['model']} answered {request['prompt']}"

    def for_other_provider(prompt: str) -> dict[str, str]:
        return {"model": "backup-model", "prompt": prompt}

    backup = ServiceBuilder().map_request(for_other_provider).service(service_fn(other_provider))
    svc = ServiceBuilder().fallback(backup).service(failing(CircuitOpen("open")))
    assert await svc("hi") == "backup-model answered hi"


async def test_async_with_enters_the_primary_and_the_fallback() -> None:
    backup = ServiceBuilder().layer(BufferLayer(4)).service(answering("backup"))
    svc = Fallback(failing(Overloaded("busy")), backup)
    with pytest.raises(ServiceClosed):
        await backup("x")  # a buffer outside its scope
    async with svc:
        assert await svc("x") == "backup: x"


async def test_a_load_shed_primary_spills_over_to_the_fallback_instead_of_waiting() -> None:
    inner, handle = mock_service()
    svc = ServiceBuilder().fallback(answering("backup")).load_shed().concurrency_limit(1)
    built = svc.service(inner)
    async with anyio.create_task_group() as tg:
        tg.start_soon(built, "first")
        _, first = await handle.next_request()
        start = anyio.current_time()
        assert await built("second") == "backup: second"
        assert anyio.current_time() == start
        first.send("primary: first")


def test_bad_arguments_are_refused_at_construction() -> None:
    async def plain(request: Any) -> Any:
        return request

    with pytest.raises(TypeError, match="wrap it with service_fn"):
        FallbackLayer(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a Service, got int"):
        Fallback(answering("a"), 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on must hold exception classes only"):
        FallbackLayer(answering("a"), on=(ValueError, "x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on must be an exception class"):
        ServiceBuilder().fallback(answering("a"), on=3)  # type: ignore[call-overload]

    async def predicate(error: BaseException) -> bool:
        return True

    with pytest.raises(TypeError, match="plain function"):
        Fallback(answering("a"), answering("b"), on=predicate)  # type: ignore[arg-type]
