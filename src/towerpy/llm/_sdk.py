"""What both provider adapters share: loading the SDK, reading arguments, checking options."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from typing import TYPE_CHECKING, Any

from pydantic_core import from_json

from .._validate import check_mapping

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import ModuleType

__all__ = ["check_params", "import_sdk", "parse_arguments"]


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
