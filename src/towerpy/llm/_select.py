"""Choosing a provider model from a ``provider:model`` string, as the demo's ``--model`` does."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._validate import check_str

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .anthropic import AnthropicModel
    from .openai import OpenAIChatModel

__all__ = ["KEY_VARIABLES", "MissingApiKey", "model_from_spec"]

KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# local OpenAI-compatible servers (Ollama, vLLM, LM Studio) ignore the key, but the SDK wants one
_UNUSED_KEY = "unused"


class MissingApiKey(LookupError):
    """Raised by `model_from_spec` when the provider's API key is not in the environment.

    Attributes:
        variable: The environment variable to set.
    """

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


def model_from_spec(
    spec: str, *, base_url: str | None = None, environ: Mapping[str, str] | None = None
) -> OpenAIChatModel | AnthropicModel:
    """Builds the step service a ``provider:model`` string names.

    Args:
        spec: ``"openai:MODEL"`` or ``"anthropic:MODEL"``, e.g. ``"openai:gpt-4o-mini"``.
        base_url: The server's URL, for OpenAI-compatible servers (vLLM, Ollama) or a proxy.
            With it, a missing API key is not an error: local servers do not check it.
        environ: Where to read the API key (default: ``os.environ``).

    Raises:
        TypeError: ``spec`` is not a str.
        ValueError: ``spec`` is not of that form.
        MissingApiKey: The key's environment variable is not set (the message names it).
        ImportError: The provider's extra is not installed (the message names the pip install).
    """
    provider, colon, name = check_str("spec", spec).partition(":")
    provider = provider.strip().lower()
    name = name.strip()
    if not colon or not name or provider not in KEY_VARIABLES:
        raise ValueError(
            f"a model is named provider:model, with provider openai or anthropic "
            f"(e.g. openai:gpt-4o-mini, anthropic:claude-sonnet-4-5); got {spec!r}"
        )
    env = os.environ if environ is None else environ
    variable = KEY_VARIABLES[provider]
    key = env.get(variable) or None
    if key is None:
        if base_url is None:
            raise MissingApiKey(
                f"{provider} needs an API key: set the {variable} environment variable "
                f"(export {variable}=...), or run the demo offline without --model",
                variable=variable,
            )
        key = _UNUSED_KEY
    if provider == "openai":
        from .openai import OpenAIChatModel

        return OpenAIChatModel(name, base_url=base_url, api_key=key)
    from .anthropic import AnthropicModel

    return AnthropicModel(name, base_url=base_url, api_key=key)
