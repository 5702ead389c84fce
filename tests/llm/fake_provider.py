"""Fake model providers that speak the OpenAI and Anthropic wire protocols, for the SDK tests.

Two fakes share one script of replies:

- `FakeProvider`: a real HTTP server on 127.0.0.1 (a stdlib ``ThreadingHTTPServer`` in a thread)
  for wire tests on the real clock, with the real SDK clients on real sockets.
- `InProcessProvider`: an ``httpx`` ``MockTransport`` handler for tests in virtual time: no
  socket, so the virtual clock only moves when the test (or the code under test) sleeps.

Replies are queued in order; a reply may be a function of the recorded request. A request with
no reply queued gets a 500 saying so, which makes a test's mistake obvious. A reply with
``chunks`` streams its body piece by piece (server-sent events), each piece after its delay:
real sleeps on the socket server, virtual ones in process.
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
    """One HTTP answer: ``body`` is JSON (dict/list), or sent as is (str/bytes).

    With ``chunks`` (``(delay, bytes)`` pairs), the body is streamed as ``text/event-stream``
    instead, each piece after its delay; ``cut`` then drops the connection after the last piece
    instead of ending the body properly.
    """

    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the fake stops)
    chunks: tuple[tuple[float, bytes], ...] | None = None
    cut: bool = False
    delay: float = 0.0  # seconds before a whole body is sent (a model generating it)

    @property
    def content_type(self) -> str:
        return "text/event-stream" if self.chunks is not None else "application/json"

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
        self.disconnects = 0  # streamed replies whose client left before the end
        self.closed_streams = 0  # in process: streamed bodies closed before their end

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
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is not None:
                    self._stream(reply)
                    return
                data = reply.encode()
                if reply.delay and script._stopping.wait(reply.delay):
                    return
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply) -> None:
                assert reply.chunks is not None
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                try:
                    for delay, piece in reply.chunks:
                        if delay and script._stopping.wait(delay):
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    if reply.cut:
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client went away: it stopped reading
                    script.disconnects += 1
                    self.close_connection = True

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
        body_type = type("StreamedBody", (_Body, hx.AsyncByteStream), {})

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
            headers = {"content-type": reply.content_type, **reply.headers}
            if reply.delay:
                await anyio.sleep(reply.delay)
            if reply.chunks is not None:
                return hx.Response(reply.status, headers=headers, stream=body_type(self, reply, hx))
            return hx.Response(reply.status, headers=headers, content=reply.encode())

        return hx.MockTransport(handle)


class _Body:
    """A streamed body in process: each piece after its (virtual) delay."""

    def __init__(self, script: _Script, reply: Reply, hx: ModuleType) -> None:
        self._script = script
        self._reply = reply
        self._hx = hx
        self._ended = False
        self._pieces: Any = None

    def __aiter__(self) -> Any:
        # one body: a second reader (an SDK draining it) goes on where the first stopped
        if self._pieces is None:
            self._pieces = self._read()
        return self._pieces

    async def _read(self) -> Any:
        assert self._reply.chunks is not None
        for delay, piece in self._reply.chunks:
            if delay:
                await anyio.sleep(delay)
            yield piece
        if self._reply.cut:
            raise self._hx.RemoteProtocolError("peer closed connection without sending the body")
        self._ended = True

    async def aclose(self) -> None:
        if not self._ended:
            self._script.closed_streams += 1
            self._ended = True


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
