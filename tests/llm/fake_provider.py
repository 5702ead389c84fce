"""Fake model providers that speak the OpenAI and Anthropic wire protocols, for the SDK tests.

Two fakes share one script of replies:

- `FakeProvider`: a real HTTP server on 127.0.0.1 (a stdlib ``ThreadingHTTPServer`` in a thread)
  for wire tests on the real clock, with the real SDK clients on real sockets.
- `InProcessProvider`: an ``httpx`` ``MockTransport`` handler for tests in virtual time: no
  socket, so the virtual clock only moves when the test (or the code under test) sleeps.

Replies are queued in order; a reply may be a function of the recorded request. A request with
no reply queued gets a 500 saying so, which makes a test's mistake obvious.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

import anthropic
import anyio
import openai

if TYPE_CHECKING:
    from types import ModuleType, TracebackType


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: ``body`` is JSON (dict/list), or sent as is (str/bytes)."""

    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the fake stops)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Recorded:
    """One request the fake received; ``at`` is the fake's clock when it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


class _Script:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Any] = deque()
        self._requests: list[Recorded] = []
        self.errors: list[Exception] = []  # what reply functions raised

    def queue(self, *replies: Any) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._replies)

    def answer(self, recorded: Recorded) -> Reply:
        with self._lock:
            self._requests.append(recorded)
            reply: Any = self._replies.popleft() if self._replies else None
        if reply is None:
            return Reply(500, openai_error(f"fake provider: no reply queued for {recorded.path}"))
        if not callable(reply):
            return reply  # type: ignore[no-any-return]
        try:
            result: Reply = reply(recorded)
        except Exception as exc:  # an assertion of the test, run in the server: report it
            self.errors.append(exc)
            return Reply(500, openai_error(f"fake provider: the test's reply raised {exc!r}"))
        return result


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many agents connect at once; the default backlog of 5 resets them


class FakeProvider(_Script):
    """A local HTTP server speaking whatever its queued replies say; use it as a context manager.

    ``url`` is ``http://127.0.0.1:PORT``: OpenAI clients take ``url + "/v1"``, Anthropic clients
    ``url``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stopping = threading.Event()
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave in separate writes

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                recorded = Recorded(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=_decode(self.rfile.read(length)),
                    at=time.monotonic(),
                )
                reply = script.answer(recorded)
                if reply.hang:
                    script._stopping.wait()
                    return
                data = reply.encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # releases handlers that hang
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        if self.errors and exc_type is None:
            raise AssertionError(f"a reply function failed: {self.errors[0]!r}") from self.errors[0]


def httpx_module(client_class: type) -> ModuleType:
    """The httpx flavour an SDK is built on (``httpx`` or ``httpx2``)."""
    return importlib.import_module(client_class.__mro__[1].__module__.partition(".")[0])


class InProcessProvider(_Script):
    """The same script, answered in process through an httpx ``MockTransport``.

    ``at`` is ``anyio.current_time()``, so waits are exact in virtual time. A reply may also be
    an exception (an ``httpx`` error) to raise from the transport, e.g. ``hx.ConnectError``.
    """

    def transport(self, hx: ModuleType) -> Any:
        """A ``MockTransport`` of ``hx`` that answers from this script."""

        async def handle(request: Any) -> Any:
            recorded = Recorded(
                method=request.method,
                path=request.url.path,
                headers=dict(request.headers),
                body=_decode(request.content),
                at=anyio.current_time(),
            )
            reply: Any = self.answer(recorded)
            if isinstance(reply, BaseException):
                raise reply
            if reply.hang:
                await anyio.sleep_forever()
            headers = {"content-type": "application/json", **reply.headers}
            return hx.Response(reply.status, headers=headers, content=reply.encode())

        return hx.MockTransport(handle)


def openai_client(
    provider: FakeProvider | InProcessProvider, *, strict: bool = True, **options: Any
) -> openai.AsyncOpenAI:
    """A real ``AsyncOpenAI`` pointed at a fake, SDK retries off, strict response validation."""
    options.setdefault("max_retries", 0)
    if isinstance(provider, FakeProvider):
        url = provider.url
    else:
        url = "http://provider.test"
        transport = provider.transport(httpx_module(openai.DefaultAsyncHttpxClient))
        options["http_client"] = openai.DefaultAsyncHttpxClient(transport=transport)
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="test-key", _strict_response_validation=strict, **options
    )


def anthropic_client(
    provider: FakeProvider | InProcessProvider, *, strict: bool = True, **options: Any
) -> anthropic.AsyncAnthropic:
    """A real ``AsyncAnthropic`` pointed at a fake, SDK retries off, strict validation."""
    options.setdefault("max_retries", 0)
    if isinstance(provider, FakeProvider):
        url = provider.url
    else:
        url = "http://provider.test"
        transport = provider.transport(httpx_module(anthropic.DefaultAsyncHttpxClient))
        options["http_client"] = anthropic.DefaultAsyncHttpxClient(transport=transport)
    return anthropic.AsyncAnthropic(
        base_url=url, api_key="test-key", _strict_response_validation=strict, **options
    )


# -- bodies ------------------------------------------------------------------------------------


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
