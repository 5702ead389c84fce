from __future__ import annotations

import pytest

import towerpy
from towerpy import errors


def test_every_error_is_a_tower_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.TowerError), name


def test_errors_are_reexported_from_the_package() -> None:
    for name in errors.__all__:
        assert getattr(towerpy, name) is getattr(errors, name)


def test_elapsed_is_a_timeout_error() -> None:
    err = errors.Elapsed("request timed out after 2.0s", seconds=2.0)
    assert isinstance(err, TimeoutError)
    assert err.seconds == 2.0
    with pytest.raises(TimeoutError):
        raise err


def test_request_too_large_is_a_value_error() -> None:
    assert issubclass(errors.RequestTooLarge, ValueError)


def test_tool_errors_share_a_base() -> None:
    assert issubclass(errors.ToolNotFound, errors.ToolError)
    assert issubclass(errors.InvalidToolArguments, errors.ToolError)


def test_provider_errors_carry_their_details() -> None:
    err = errors.RateLimited(
        "rate limited",
        provider="openai",
        status_code=429,
        retry_after=1.5,
        retryable=True,
        request_id="req_1",
        body={"error": {}},
    )
    assert isinstance(err, errors.ProviderError)
    assert (err.status_code, err.retry_after, err.retryable, err.request_id) == (
        429,
        1.5,
        True,
        "req_1",
    )
    assert issubclass(errors.ProviderUnavailable, errors.ProviderError)


def test_retry_after_defaults_to_none() -> None:
    assert errors.Overloaded().retry_after is None


def test_service_closed_keeps_its_cause() -> None:
    failure = RuntimeError("worker died")
    with pytest.raises(errors.ServiceClosed) as info:
        raise errors.ServiceClosed("buffer closed") from failure
    assert info.value.__cause__ is failure


def test_max_steps_exceeded_keeps_the_conversation() -> None:
    err = errors.MaxStepsExceeded("too many steps", messages=["m"])
    assert err.messages == ["m"]
