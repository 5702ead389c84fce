"""Construction of the provider step services, and the helpers both share."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from towerpy.llm import AnthropicModel, OpenAIChatModel
from towerpy.llm._sdk import parse_arguments

from .fake_provider import InProcessProvider, anthropic_client, openai_client

Model = type[OpenAIChatModel] | type[AnthropicModel]
MODELS: list[Model] = [OpenAIChatModel, AnthropicModel]


@pytest.mark.parametrize(
    ("value", "arguments", "raw"),
    [
        ('{"city": "Oslo"}', {"city": "Oslo"}, None),
        ({"city": "Oslo"}, {"city": "Oslo"}, None),  # some servers send an object
        ("", {}, None),
        ("  \n", {}, None),
        (None, {}, None),
        ('{"city": "Os', {}, '{"city": "Os'),
        ("[1, 2]", {}, "[1, 2]"),
        ('"Oslo"', {}, '"Oslo"'),
        ("null", {}, "null"),
        ("not json", {}, "not json"),
        ([1, 2], {}, "[1, 2]"),
    ],
)
def test_arguments_are_parsed_once_and_anything_but_an_object_is_kept_as_text(
    value: object, arguments: dict[str, Any], raw: str | None
) -> None:
    assert parse_arguments(value) == (arguments, raw)


@pytest.mark.parametrize(
    ("value", "arguments", "raw"),
    [
        ('{"emoji": "\ud83d"}', {}, '{"emoji": "\\ud83d"}'),  # text with a lone surrogate
        ({"emoji": "\ud83d"}, {}, '{"emoji": "\\ud83d"}'),  # an object with one (Anthropic)
        ({"list": ["\udc00"]}, {}, '{"list": ["\\udc00"]}'),
        ('{"emoji": "\ud83d\ude00"}', {"emoji": "😀"}, None),  # a pair split in two is one
    ],
)
def test_arguments_that_are_not_valid_unicode_are_kept_as_text_that_can_be_sent_back(
    value: object, arguments: dict[str, Any], raw: str | None
) -> None:
    assert parse_arguments(value) == (arguments, raw)
    if raw is not None:
        raw.encode()  # UTF-8 carries it: the conversation can be replayed to the provider


@pytest.mark.parametrize(
    ("cls", "module", "extra"),
    [(OpenAIChatModel, "openai", "openai"), (AnthropicModel, "anthropic", "anthropic")],
)
def test_without_the_sdk_construction_names_the_pip_install_to_run(
    monkeypatch: pytest.MonkeyPatch, cls: Model, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=rf"pip install 'towerpy\[{extra}\]'"):
        cls("m", api_key="k")


def test_importing_towerpy_llm_does_not_import_the_sdks() -> None:
    import subprocess

    code = (
        "import sys, towerpy.llm, towerpy; "
        "print('openai' in sys.modules, 'anthropic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("cls", MODELS)
def test_a_built_client_has_the_sdk_retries_off(cls: Model) -> None:
    model = cls("m", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert model.client.max_retries == 0
    assert "127.0.0.1:9" in repr(model)


@pytest.mark.parametrize("cls", MODELS)
def test_sdk_max_retries_none_keeps_the_sdk_default_on_a_built_client(cls: Model) -> None:
    model = cls("m", api_key="k", sdk_max_retries=None)
    assert model.client.max_retries == 2


def test_a_users_client_gets_a_copy_without_retries_and_is_itself_unchanged() -> None:
    provider = InProcessProvider()
    client = openai_client(provider, max_retries=5)
    model = OpenAIChatModel("m", client=client)
    assert client.max_retries == 5
    assert model.client.max_retries == 0
    assert model.client is not client
    assert OpenAIChatModel("m", client=client, sdk_max_retries=None).client is client
    assert OpenAIChatModel("m", client=client, sdk_max_retries=3).client.max_retries == 3
    aclient = anthropic_client(provider, max_retries=5)
    amodel = AnthropicModel("m", client=aclient)
    assert (aclient.max_retries, amodel.client.max_retries) == (5, 0)
    # a client that already has no retries is used as is
    no_retries = openai_client(provider, max_retries=0)
    assert OpenAIChatModel("m", client=no_retries).client is no_retries


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize(
    ("bad", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)]
)
def test_a_bad_sdk_max_retries_is_rejected_at_construction(
    cls: Model, bad: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="sdk_max_retries must be "):
        cls("m", api_key="k", sdk_max_retries=bad)


def test_client_and_connection_options_together_are_rejected() -> None:
    provider = InProcessProvider()
    with pytest.raises(ValueError, match="either client= or base_url=/api_key="):
        OpenAIChatModel("m", client=openai_client(provider), api_key="k")
    with pytest.raises(ValueError, match="either client= or base_url=/api_key="):
        AnthropicModel("m", client=anthropic_client(provider), base_url="http://x")


def test_a_client_of_the_other_provider_is_rejected() -> None:
    provider = InProcessProvider()
    with pytest.raises(TypeError, match=r"client must be an openai\.AsyncOpenAI client, got Async"):
        OpenAIChatModel("m", client=anthropic_client(provider))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"client must be an anthropic\.AsyncAnthropic client"):
        AnthropicModel("m", client=openai_client(provider))  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", MODELS)
def test_an_empty_model_name_is_rejected(cls: Model) -> None:
    with pytest.raises(ValueError, match="model must be a non-empty str"):
        cls("", api_key="k")
    with pytest.raises(TypeError, match="model must be a str, got NoneType"):
        cls(None, api_key="k")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-5, ValueError), (True, TypeError), (2.5, TypeError)]
)
def test_a_bad_max_tokens_is_rejected(cls: Model, bad: int, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_tokens must be "):
        cls("m", api_key="k", max_tokens=bad)


@pytest.mark.parametrize("cls", MODELS)
def test_params_the_sdk_does_not_take_are_rejected_at_construction(cls: Model) -> None:
    with pytest.raises(TypeError, match=r"the SDK takes no parameter 'temprature'"):
        cls("m", api_key="k", params={"temprature": 0.2})


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("owned", ["model", "messages", "tools", "max_tokens"])
def test_params_may_not_set_what_the_adapter_sets(cls: Model, owned: str) -> None:
    with pytest.raises(ValueError, match=f"params may not set {owned}"):
        cls("m", api_key="k", params={owned: 1})


def test_params_and_max_tokens_reach_the_wire_request() -> None:
    from towerpy.llm import ChatRequest, Message

    request = ChatRequest(messages=[Message.user("hi")])
    model = OpenAIChatModel(
        "m", api_key="k", max_tokens=64, params={"temperature": 0, "extra_body": {"top_k": 3}}
    )
    assert model.wire_request(request) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "temperature": 0,
        "extra_body": {"top_k": 3},
    }
    amodel = AnthropicModel("c", api_key="k", params={"stop_sequences": ["END"]})
    assert amodel.wire_request(request.model_copy(update={"model": "other"})) == {
        "model": "other",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stop_sequences": ["END"],
        "max_tokens": 4096,
    }


@pytest.mark.anyio
async def test_the_service_closes_a_client_it_built_but_not_one_it_was_given() -> None:
    provider = InProcessProvider()
    given = openai_client(provider)
    async with OpenAIChatModel("m", client=given, sdk_max_retries=None):
        pass
    assert not given.is_closed()
    async with OpenAIChatModel("m", api_key="k") as built:
        pass
    assert built.client.is_closed()
    async with AnthropicModel("m", api_key="k") as abuilt:
        pass
    assert abuilt.client.is_closed()
    agiven = anthropic_client(provider)
    async with AnthropicModel("m", client=agiven, sdk_max_retries=None):
        pass
    assert not agiven.is_closed()
    await given.close()
    await agiven.close()
