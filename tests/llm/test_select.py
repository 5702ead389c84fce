"""Choosing a provider model from the demo's ``--model provider:model``."""

from __future__ import annotations

import sys

import pytest

from towerpy.llm import AnthropicModel, OpenAIChatModel
from towerpy.llm._select import MissingApiKey, model_from_spec


def test_openai_and_anthropic_models_are_built_with_the_key_from_the_environment() -> None:
    gpt = model_from_spec("openai:gpt-4o-mini", environ={"OPENAI_API_KEY": "sk-1"})
    assert isinstance(gpt, OpenAIChatModel)
    assert (gpt.model, gpt.client.api_key, gpt.client.max_retries) == ("gpt-4o-mini", "sk-1", 0)
    claude = model_from_spec(" Anthropic : claude-x ", environ={"ANTHROPIC_API_KEY": "k"})
    assert isinstance(claude, AnthropicModel)
    assert (claude.model, claude.client.api_key) == ("claude-x", "k")


@pytest.mark.parametrize(
    ("spec", "variable"), [("openai:m", "OPENAI_API_KEY"), ("anthropic:m", "ANTHROPIC_API_KEY")]
)
def test_without_the_key_the_error_names_the_variable_to_set(spec: str, variable: str) -> None:
    with pytest.raises(MissingApiKey, match=f"set the {variable} environment variable") as raised:
        model_from_spec(spec, environ={variable: ""})
    assert raised.value.variable == variable


def test_a_local_server_needs_no_key() -> None:
    model = model_from_spec("openai:llama3.1", base_url="http://localhost:11434/v1", environ={})
    assert isinstance(model, OpenAIChatModel)
    assert str(model.client.base_url) == "http://localhost:11434/v1/"


@pytest.mark.parametrize("spec", ["gpt-4o", "openai:", "google:gemini", ":m", ""])
def test_a_malformed_spec_says_what_the_form_is(spec: str) -> None:
    with pytest.raises(ValueError, match="a model is named provider:model"):
        model_from_spec(spec, environ={})


def test_without_the_extra_the_error_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ImportError, match=r"pip install 'towerpy\[anthropic\]'"):
        model_from_spec("anthropic:m", environ={"ANTHROPIC_API_KEY": "k"})
