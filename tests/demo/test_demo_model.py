"""``python -m towerpy demo --model provider:model``: the same scenario against a real provider.

The provider is a local server speaking each protocol (the real SDK clients talk to it over
HTTP), so these run on the real clock; nothing sleeps to synchronise.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest

from towerpy.__main__ import main
from towerpy._demo.scenario import PLANS, build
from towerpy._demo.timeline import Timeline
from towerpy.llm import ProviderQuota, ScriptedModel

from ..llm.fake_provider import FakeProvider, Recorded, Reply
from ..llm.provider_kit import KITS, Kit

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(params=KITS, ids=repr)
def provider(request: pytest.FixtureRequest) -> Kit:
    kit: Kit = request.param
    return kit


def a_model(kit: Kit) -> object:
    """Answers each agent: first ask for a file, then answer with the prompt it was given."""
    ids = itertools.count(1)

    def answer(recorded: Recorded) -> Reply:
        messages = recorded.body["messages"]
        prompt = kit.user_texts(recorded)[0]
        asked_tools = any(
            m["role"] == "tool"
            or (
                isinstance(m["content"], list)
                and any(b["type"] == "tool_result" for b in m["content"])
            )
            for m in messages
        )
        if not asked_tools:
            return kit.tool_calls([(f"call_{next(ids)}", "read_file", '{"path": "README.md"}')])
        return kit.text(f"done: {prompt}")

    return answer


@pytest.mark.timeout(60)
def test_the_demo_runs_its_scenario_against_a_real_provider(
    provider: Kit, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    # the first call meets an overloaded server: the demo's RetryLayer tries it again
    overloaded = Reply(503, provider.error("overloaded"), {"retry-after-ms": "10"})
    fake_provider.queue(overloaded, *[a_model(provider)] * 20)
    url = fake_provider.url + ("/v1" if provider.name == "openai" else "")
    status = main(["demo", "--model", f"{provider.name}:fake-model", "--base-url", url, "--ascii"])
    out = capsys.readouterr().out
    assert status == 0
    assert "real time" in out.splitlines()[0]
    assert out.splitlines()[1] == f"every agent talks to the real model {provider.name}:fake-model"
    for plan in PLANS:
        assert f"done: {plan.prompt}" in out
    requests = fake_provider.requests
    assert len(requests) == 1 + 2 * len(PLANS)  # each agent: a tool call, then its answer
    tool_names = provider.tool_names(requests[0])
    assert sorted(tool_names) == ["add", "fetch", "read_file", "run_tests", "search"]


def _quotas(service: object) -> list[ProviderQuota[Any, Any]]:
    found = []
    while service is not None:
        if isinstance(service, ProviderQuota):
            found.append(service)
        service = getattr(service, "inner", None)
    return found


@pytest.mark.parametrize("real", [True, False], ids=["model", "scripted"])
def test_with_a_real_model_every_agent_shares_one_provider_quota(real: bool) -> None:
    model = ScriptedModel([]) if real else None
    agents = build(Timeline(), model)
    quotas = [quota for _, agent in agents for quota in _quotas(agent.step)]
    if not real:
        assert quotas == []  # the scripted world has no provider quota
        return
    assert len(quotas) == len(PLANS)
    assert len({id(quota._quota) for quota in quotas}) == 1  # one key: one quota for all


@pytest.mark.parametrize(
    ("spec", "variable"),
    [("openai:gpt-4o-mini", "OPENAI_API_KEY"), ("anthropic:claude-x", "ANTHROPIC_API_KEY")],
)
def test_without_the_api_key_the_demo_says_which_variable_to_set(
    spec: str, variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(variable, raising=False)
    assert main(["demo", "--model", spec]) == 2
    captured = capsys.readouterr()
    assert f"set the {variable} environment variable" in captured.err
    assert captured.out == ""


def test_a_malformed_model_or_a_base_url_alone_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as bad_model:
        main(["demo", "--model", "gpt-4o"])
    assert bad_model.value.code == 2
    assert "provider:model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as alone:
        main(["demo", "--base-url", "http://localhost:11434/v1"])
    assert alone.value.code == 2
    assert "--base-url goes with --model" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_a_provider_that_refuses_shows_as_each_agents_failure(
    fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = KITS[0]
    refusal = Reply(401, kit.error("Incorrect API key provided", "invalid_request_error"))
    fake_provider.queue(*[refusal] * len(PLANS))
    status = main(["demo", "--model", "openai:m", "--base-url", fake_provider.url + "/v1"])
    out = capsys.readouterr().out
    assert status == 0
    answers = out[out.index("Answers") :].splitlines()[1:]
    assert len(answers) == len(PLANS)
    assert all("(failed: openai: HTTP 401" in line for line in answers)
    assert len(fake_provider.requests) == len(PLANS)  # a 401 is not retried
