"""What a span says about an agent, its model and a tool, read from the objects themselves."""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

from .. import _observe
from .._chain import iter_chain

__all__ = ["agent_name", "describe_step", "tool_description"]

# the adapters towerpy ships, by module: the GenAI conventions' provider names
_PROVIDERS = {
    "towerpy.llm.openai": "openai",
    "towerpy.llm.anthropic": "anthropic",
    "towerpy.llm.scripted": "towerpy.scripted",
}
_UNKNOWN = "_OTHER"  # no provider found: the conventions' fallback value

_steps: weakref.WeakKeyDictionary[Any, tuple[str | None, str]] = weakref.WeakKeyDictionary()


def describe_step(step: object) -> tuple[str | None, str]:
    """The model name and provider of a step service, found down its ``inner`` chain.

    The model is the first ``model`` attribute that is a str (`OpenAIChatModel` and
    `AnthropicModel` have one; so may a service of one's own); the provider is a ``provider``
    attribute, or the adapter's (``"openai"``, ``"anthropic"``, ``"towerpy.scripted"``), else
    ``"_OTHER"``. Read once per step service.
    """
    try:
        return _steps[step]
    except (KeyError, TypeError):  # not seen yet, or not weakly referenceable
        pass
    model: str | None = None
    provider: str | None = None
    for node in iter_chain(step):
        found = getattr(node, "model", None)
        if model is None and isinstance(found, str):
            model = found
        named = getattr(node, "provider", None)
        if provider is None:
            provider = named if isinstance(named, str) else _PROVIDERS.get(type(node).__module__)
    described = (model, provider or _UNKNOWN)
    with contextlib.suppress(TypeError):  # not weakly referenceable: read it again next time
        _steps[step] = described
    return described


def agent_name(agent: object) -> str | None:
    """The agent's name: a ``name`` attribute that is a non-empty str, else its `AgentPool` name."""
    name = getattr(agent, "name", None)
    if isinstance(name, str) and name:
        return name
    try:
        return _observe.names.get(agent)
    except TypeError:  # not weakly referenceable
        return None


def tool_description(router: object, name: str) -> str | None:
    """The description of the tool ``name`` of a `ToolRouter`, if it has that tool."""
    get = getattr(router, "get", None)
    tool = get(name) if callable(get) else None
    # a Tool has a description; any routable service has a spec (an MCP server's tools)
    description = getattr(tool, "description", None) or getattr(
        getattr(tool, "spec", None), "description", None
    )
    return description if isinstance(description, str) and description else None
