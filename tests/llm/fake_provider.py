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
            return Reply(500, _error(f"fake provider: no reply queued for {recorded.path}"))
        if not callable(reply):
            return reply  # type: ignore[no-any-return]
        try:
            result: Reply = reply(recorded)
        except Exception as exc:  # an assertion of the test, run in the server: report it
            self.errors.append(exc)
            return Reply(500, _error(f"fake provider: the test's reply raised {exc!r}"))
        return result


def _error(message: str) -> dict[str, Any]:
    # a body both SDKs read the message of
    return {"type": "error", "error": {"type": "api_error", "message": message}}


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
