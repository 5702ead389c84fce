"""Reply bodies in each provider's wire format, and a kit per provider for tests run on both."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anthropic
import openai

from .fake_provider import (
    FakeProvider,
    InProcessProvider,
    Recorded,
    Reply,
    anthropic_client,
    openai_client,
)

if TYPE_CHECKING:
    from types import ModuleType


def openai_completion(
    content: str | None = None,
    tool_calls: list[tuple[str, str, str]] | None = None,
    *,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = (10, 5),
    refusal: str | None = None,
) -> dict[str, Any]:
    """A complete ``chat.completion`` body; tool calls are ``(id, name, arguments text)``."""
    calls = [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
        for cid, name, args in tool_calls or []
    ]
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": refusal,
                    "tool_calls": calls or None,
                },
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
                "logprobs": None,
            }
        ],
    }
    if usage is not None:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        }
    return body


def openai_error(
    message: str, kind: str = "server_error", code: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def anthropic_message(
    text: str | None = None,
    tool_uses: list[tuple[str, str, Any]] | None = None,
    *,
    stop_reason: str | None = None,
    usage: tuple[int, int] = (10, 5),
    cache: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A complete Anthropic ``message`` body; tool uses are ``(id, name, input)``."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    content.extend(
        {"type": "tool_use", "id": tid, "name": name, "input": arguments}
        for tid, name, arguments in tool_uses or []
    )
    usage_body: dict[str, Any] = {"input_tokens": usage[0], "output_tokens": usage[1]}
    if cache is not None:
        usage_body["cache_read_input_tokens"] = cache[0]
        usage_body["cache_creation_input_tokens"] = cache[1]
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "fake-model",
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "stop_sequence": None,
        "usage": usage_body,
    }


def anthropic_error(message: str, kind: str = "api_error") -> dict[str, Any]:
    """An Anthropic error body."""
    return {"type": "error", "error": {"type": kind, "message": message}}


# -- one kit per provider, for tests that run against both --------------------------------------


@dataclass(frozen=True, repr=False)
class Kit:
    """What a test needs to drive one provider: its SDK, model, and reply bodies."""

    name: str
    sdk: ModuleType
    request_id_header: str

    def __repr__(self) -> str:
        return self.name

    def client(self, fake: FakeProvider | InProcessProvider, **options: Any) -> Any:
        if self.name == "openai":
            return openai_client(fake, **options)
        return anthropic_client(fake, **options)

    def model(self, fake: FakeProvider | InProcessProvider, **options: Any) -> Any:
        from towerpy.llm import AnthropicModel, OpenAIChatModel

        client_options = options.pop("client_options", {})
        cls = OpenAIChatModel if self.name == "openai" else AnthropicModel
        return cls("m", client=self.client(fake, **client_options), **options)

    def error(self, message: str, kind: str = "api_error") -> dict[str, Any]:
        return (
            openai_error(message, kind) if self.name == "openai" else anthropic_error(message, kind)
        )

    def text(self, text: str, usage: tuple[int, int] = (10, 5)) -> Reply:
        if self.name == "openai":
            return Reply(body=openai_completion(text, usage=usage))
        return Reply(body=anthropic_message(text, usage=usage))

    def tool_calls(
        self, calls: list[tuple[str, str, str]], usage: tuple[int, int] = (10, 5)
    ) -> Reply:
        """A reply asking for tools; arguments are text (for Anthropic, parsed when valid)."""
        if self.name == "openai":
            return Reply(body=openai_completion(None, calls, usage=usage))
        uses = []
        for cid, name, text in calls:
            try:
                arguments: Any = json.loads(text)
            except ValueError:
                arguments = text  # a lax server that passes text through
            uses.append((cid, name, arguments))
        return Reply(body=anthropic_message(None, uses, usage=usage))

    def tool_names(self, recorded: Recorded) -> list[str]:
        """The names of the tools a recorded request offered the model."""
        tools = recorded.body.get("tools", [])
        if self.name == "openai":
            return [spec["function"]["name"] for spec in tools]
        return [spec["name"] for spec in tools]

    def user_texts(self, recorded: Recorded) -> list[str]:
        """The user texts of a recorded request, in order."""
        texts: list[str] = []
        for message in recorded.body["messages"]:
            if message["role"] != "user":
                continue
            content = message["content"]
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.extend(b["text"] for b in content if b["type"] == "text")
        return texts


OPENAI = Kit("openai", openai, "x-request-id")
ANTHROPIC = Kit("anthropic", anthropic, "request-id")
KITS = [OPENAI, ANTHROPIC]
