"""What both provider adapters share: loading the SDK, reading arguments, checking options."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError
from pydantic_core import from_json

from .._ratelimits import RateLimitInfo
from .._validate import check_mapping
from ._errors import from_sdk_error, unreadable_answer

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
    from types import ModuleType

    from .events import StepEvent

__all__ = [
    "StreamReader",
    "check_params",
    "import_sdk",
    "parse_arguments",
    "read_stream",
]

# what a lax compatible server's answer can make the readers raise
UNREADABLE = (ValidationError, AttributeError, TypeError)


def import_sdk(module: str, extra: str, who: str) -> ModuleType:
    """Imports a provider SDK, or says which extra installs it.

    Args:
        module: The SDK's import name (``"openai"``).
        extra: The towerpy extra that installs it.
        who: The class that needs it, for the message.

    Raises:
        ImportError: The SDK is not installed; the message names the ``pip install`` to run.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{who} needs the {module!r} package, which is not installed; "
            f"run: pip install 'towerpy[{extra}]'"
        ) from exc


def check_params(
    who: str, params: Mapping[str, Any] | None, create: Callable[..., Any], owned: Iterable[str]
) -> dict[str, Any]:
    """Checks extra request parameters against the SDK method they will be passed to.

    Args:
        who: The class taking them, for messages.
        params: Extra keyword arguments for every request, or None.
        create: The SDK method (``client.chat.completions.create``).
        owned: Parameters the adapter sets itself, which ``params`` may not override.

    Returns:
        A copy of ``params`` (empty when None).

    Raises:
        TypeError: ``params`` is not a mapping, or names a parameter the SDK method does not
            take.
        ValueError: A parameter the adapter sets itself.
    """
    if params is not None:
        check_mapping("params", params, what="a mapping of parameter names to values")
    result = dict(params or {})
    owned = set(owned)
    clash = sorted(owned & result.keys())
    if clash:
        raise ValueError(
            f"{who}: params may not set {', '.join(clash)}; the adapter sets "
            f"{', '.join(sorted(owned))} from the ChatRequest and its own arguments"
        )
    try:
        accepted = inspect.signature(create).parameters
    except (TypeError, ValueError):  # pragma: no cover - an SDK method without a signature
        return result
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return result
    unknown = sorted(result.keys() - accepted.keys())
    if unknown:
        raise TypeError(
            f"{who}: the SDK takes no parameter {', '.join(map(repr, unknown))}; "
            f"pass provider-specific fields as params={{'extra_body': {{...}}}}"
        )
    return result


def parse_arguments(value: object) -> tuple[dict[str, Any], str | None]:
    """Reads a tool call's arguments once, keeping anything that is not a JSON object.

    Returns:
        ``(arguments, raw_arguments)``: a dict, or a JSON string of one, gives
        ``(that dict, None)``; ``None``, ``""`` or whitespace means no arguments, ``({}, None)``;
        anything else (text that does not parse, a JSON list, string or number, text cut short)
        gives ``({}, the text)`` so the router can reject the call and the model can correct it.
    """
    if isinstance(value, dict):
        if _has_lone_surrogate(value):  # not valid Unicode: the tool must not get it
            return {}, json.dumps(value, ensure_ascii=True, default=str)
        return value, None
    if value is None:
        return {}, None
    if isinstance(value, str):
        if not value.strip():
            return {}, None
        try:
            parsed = from_json(value)  # jiter: about 3x faster than json.loads here
        except ValueError:
            return {}, value
        except TypeError:  # jiter refuses text that is not valid Unicode (a lone surrogate)
            joined = _join_pairs(value)
            if _SURROGATE.search(joined) is None:  # only a pair split in two: fine once joined
                return parse_arguments(joined)
            return {}, _SURROGATE.sub(_escape, joined)
        if isinstance(parsed, dict):
            return parsed, None
        return {}, value
    # a lax server sent a JSON list or number where an object belongs: keep it as text
    return {}, json.dumps(value, ensure_ascii=True, default=str)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _join_pairs(text: str) -> str:
    # a surrogate pair split in two code points is one character
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")


def _escape(match: re.Match[str]) -> str:
    # a lone surrogate written as a JSON \\uXXXX escape: the same JSON, now valid Unicode, so
    # the text still reads as what the model sent and can be sent back (UTF-8 cannot carry it)
    return f"\\u{ord(match.group()):04x}"


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


class StreamReader(Protocol):
    """Reads the items of one streamed answer (chunks, or server-sent events) into step events."""

    def feed(self, item: Any) -> list[StepEvent]:
        """Reads one item of the stream."""
        ...

    def finish(self) -> list[StepEvent]:
        """Ends the answer; the last event is `ModelFinished`."""
        ...


async def read_stream(
    sdk: ModuleType,
    provider: str,
    create: Callable[..., Awaitable[Any]],
    kwargs: dict[str, Any],
    reader_for: Callable[[str | None, RateLimitInfo | None], StreamReader],
) -> AsyncGenerator[StepEvent, None]:
    """Makes a streamed SDK call and yields its step events.

    The response is closed however the generator is left.

    Args:
        sdk: The SDK module, for its exception classes.
        provider: ``"openai"`` or ``"anthropic"``.
        create: The SDK method; ``create(**kwargs)`` returns the SDK's stream.
        kwargs: Its arguments, ``stream=True`` included.
        reader_for: Makes the reader, given the provider's request id and the quota its
            response headers report.

    Raises:
        ProviderError: The provider failed, before or during the answer (an error event, a
            connection cut or timeout while reading), or the answer could not be read.
    """
    try:
        items = await create(**kwargs)
    except sdk.APIError as exc:
        raise from_sdk_error(sdk, provider, exc) from exc
    headers = items.response.headers
    request_id = headers.get("x-request-id") or headers.get("request-id")
    reader = reader_for(request_id, RateLimitInfo.from_headers(headers))
    async with items:
        while True:
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                break
            except sdk.APIError as exc:
                raise from_sdk_error(sdk, provider, exc) from exc
            except Exception as exc:
                mapped = _transport_error(sdk, exc, items.response)
                if mapped is None:
                    raise
                raise from_sdk_error(sdk, provider, mapped) from exc
            try:
                events = reader.feed(item)
            except UNREADABLE as exc:  # a lax server's item the SDK let through unchecked
                raise unreadable_answer(provider, exc, request_id=request_id) from exc
            for event in events:
                yield event
    try:
        events = reader.finish()
    except UNREADABLE as exc:
        raise unreadable_answer(provider, exc, request_id=request_id) from exc
    for event in events:
        yield event


def _transport_error(sdk: ModuleType, exc: Exception, response: Any) -> Exception | None:
    # some SDKs let the HTTP client's errors out of a stream unwrapped: wrap them as the SDK
    # wraps them before the answer starts (a timeout, or a connection error)
    hx = sys.modules.get(type(response).__module__.partition(".")[0])
    if hx is None or not isinstance(exc, hx.TransportError):
        return None
    request = response.request
    if isinstance(exc, hx.TimeoutException):
        return sdk.APITimeoutError(request=request)  # type: ignore[no-any-return]
    return sdk.APIConnectionError(request=request)  # type: ignore[no-any-return]
