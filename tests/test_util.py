from __future__ import annotations

from typing import Any

import anyio
import pytest

from towerpy import MapErr, MapRequest, MapResponse, ServiceBuilder, service_fn
from towerpy.testing import mock_service, wait_all_tasks_blocked

from .reference import ReferenceLimit

pytestmark = pytest.mark.anyio


async def echo(x: Any) -> Any:
    return x


async def fail(x: Any) -> Any:
    raise KeyError(x)


async def test_map_request_transforms_the_request() -> None:
    svc: MapRequest[int, Any] = MapRequest(service_fn(echo), lambda r: r * 2)
    assert await svc(3) == 6


async def test_map_response_transforms_the_response() -> None:
    svc = MapResponse(service_fn(echo), str)
    assert await svc(3) == "3"


async def test_map_response_leaves_errors_alone() -> None:
    svc = MapResponse(service_fn(fail), str)
    with pytest.raises(KeyError):
        await svc(1)


async def test_map_err_replaces_the_error_and_chains_the_original() -> None:
    svc = MapErr(service_fn(fail), lambda e: RuntimeError(f"wrapped {e!r}"))
    with pytest.raises(RuntimeError, match="wrapped KeyError") as info:
        await svc(1)
    assert isinstance(info.value.__cause__, KeyError)


async def test_map_err_returning_the_same_error_reraises_it_unchanged() -> None:
    svc = MapErr(service_fn(fail), lambda e: e)
    with pytest.raises(KeyError) as info:
        await svc(1)
    assert info.value.__cause__ is None


async def test_map_err_does_not_touch_cancellation() -> None:
    inner, _ = mock_service()
    mapped: list[BaseException] = []

    def record(e: Exception) -> Exception:
        mapped.append(e)
        return e

    svc = MapErr(inner, record)
    with anyio.move_on_after(1) as scope:
        await svc("x")
    assert scope.cancelled_caught
    assert mapped == []


async def test_map_err_function_returning_a_non_exception_is_a_clear_error() -> None:
    svc = MapErr(service_fn(fail), lambda e: "nope")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return an exception, returned str"):
        await svc(1)


async def test_map_request_error_in_the_function_never_reaches_the_inner_service() -> None:
    inner, handle = mock_service()
    svc: MapRequest[int, Any] = MapRequest(inner, lambda r: 1 / r)
    with pytest.raises(ZeroDivisionError):
        await svc(0)
    assert handle.pending == 0


async def test_combinators_forward_readiness_to_a_limit_inside() -> None:
    inner, handle = mock_service()
    limit = ReferenceLimit(inner, 1)
    svc = ServiceBuilder().map_request(str).map_response(len).map_err(lambda e: e).service(limit)
    await svc.ready()
    assert limit.in_use == 1
    result: list[int] = []

    async def answer() -> None:
        request, responder = await handle.next_request()
        assert request == "42"
        responder.send("four-two")

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        result.append(await svc.call(42))
        await wait_all_tasks_blocked()
    assert result == [8]
    assert limit.in_use == 0
    assert await svc.try_ready()
    assert limit.in_use == 1
