"""`OpenAIChatModel`: one Chat Completions call per step, through the official ``openai`` SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from typing_extensions import override

from .._ratelimits import create_reading_headers
from .._service import Service
from .._validate import check_instance, check_int, check_positive_int, check_str
from ._errors import from_sdk_error, unreadable_answer
from ._openai_stream import ChunkReader
from ._openai_wire import to_outcome, to_wire_messages, to_wire_tools
from ._sdk import UNREADABLE, check_params, import_sdk, read_stream
from .events import StepStream
from .messages import ChatRequest, StepOutcome

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    import openai

__all__ = ["OpenAIChatModel"]

_OWNED = ("model", "messages", "tools", "stream", "max_tokens")


@final
class OpenAIChatModel(Service[ChatRequest, StepOutcome], direct_call=True):
    """A step service that makes one Chat Completions call per request.

    It serves OpenAI and any OpenAI-compatible server (vLLM, Ollama, LM Studio, Groq, Together,
    OpenRouter, Azure OpenAI) through the client's ``base_url``. It sends only portable fields:
    ``model``, ``messages``, ``tools`` when the request has some, ``max_tokens`` when set, and
    whatever ``params`` adds.

    ``ready()`` returns at once: the service has no capacity of its own (put a
    `ConcurrencyLimitLayer` or `RateLimitLayer` in front of it for that). ``call()`` converts the
    request, awaits the SDK and converts the answer: ``done`` is True exactly when the model asked
    for no tool; argument text that is not a JSON object is kept in ``raw_arguments`` so the tool
    router rejects that call and the model can correct it. The object is safe to share between
    any number of tasks.

    The SDK's own retries are off (``max_retries=0``, also on a client you pass in, through
    ``client.with_options``) so that `RetryLayer` is the one place retries happen; otherwise the
    two multiply (3 SDK tries x 3 RetryLayer tries = 9 requests).

    Args:
        model: The model name (on Azure, the deployment name). A request's own ``model`` wins.
        client: An ``openai.AsyncOpenAI`` (or ``AsyncAzureOpenAI``) to use. Without one, the
            service builds one from ``base_url`` and ``api_key`` (default: the
            ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` environment variables) and closes it on
            ``__aexit__``; a client you pass is yours to close.
        base_url: The server's URL, e.g. ``"http://localhost:11434/v1"`` for Ollama. Only without
            ``client``.
        api_key: The API key. Only without ``client``.
        sdk_max_retries: The SDK's own retries; ``None`` keeps the client's setting.
        max_tokens: Sent as ``max_tokens`` when set (newer OpenAI models want
            ``params={"max_completion_tokens": n}`` instead).
        params: More keyword arguments for every ``chat.completions.create`` call
            (``temperature``, ``tool_choice``, ``parallel_tool_calls``, ``extra_body``, ...),
            checked against the SDK's signature here.

    Raises:
        ImportError: The ``openai`` package is not installed (``pip install 'towerpy[openai]'``).
        ValueError: An empty ``model``, ``client`` together with ``base_url``/``api_key``, a
            negative ``sdk_max_retries``, ``max_tokens`` below 1, or ``params`` setting a field
            the service sets.
        TypeError: An argument of the wrong type (``model`` not a str, ``sdk_max_retries`` or
            ``max_tokens`` not an int, ``client`` not an ``openai.AsyncOpenAI``, ``params`` not
            a mapping), or ``params`` names a parameter the SDK does not take.
        ProviderError: From ``call()``: the provider failed (`RateLimited` on 429,
            `ProviderUnavailable` on 5xx, timeouts and connection errors), with ``status_code``,
            ``retry_after``, ``retryable`` and the SDK's exception as ``__cause__``. A 200 answer
            that carries an error or no choice raises too.
    """

    __slots__ = (
        "_client",
        "_create",
        "_error",
        "_extra",
        "_owns_client",
        "_sdk",
        "_stream_create",
        "model",
    )

    def __init__(
        self,
        model: str,
        *,
        client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        sdk_max_retries: int | None = 0,
        max_tokens: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        sdk = import_sdk("openai", "openai", "OpenAIChatModel")
        check_str("model", model, empty=False)
        if sdk_max_retries is not None:
            check_int("sdk_max_retries", sdk_max_retries, minimum=0)
        if max_tokens is not None:
            check_positive_int("max_tokens", max_tokens)
        if client is None:
            options: dict[str, Any] = {"base_url": base_url, "api_key": api_key}
            if sdk_max_retries is not None:
                options["max_retries"] = sdk_max_retries
            client = sdk.AsyncOpenAI(**options)
            self._owns_client = True
        else:
            if base_url is not None or api_key is not None:
                raise ValueError(
                    "OpenAIChatModel: pass either client= or base_url=/api_key=, not both "
                    "(configure the client you pass instead)"
                )
            check_instance("client", client, sdk.AsyncOpenAI, "an openai.AsyncOpenAI client")
            if sdk_max_retries is not None and client.max_retries != sdk_max_retries:
                client = client.with_options(max_retries=sdk_max_retries)  # shares the pool
            self._owns_client = False
        self.model = model
        self._sdk = sdk
        self._client = client
        # the raw form gives the response headers too: the quota they report (rate_limits)
        self._create = client.chat.completions.with_raw_response.create
        # a stream's own response carries the headers: the plain create
        self._stream_create = client.chat.completions.create
        self._error: type[Exception] = sdk.APIError
        self._extra = check_params(
            "OpenAIChatModel", params, client.chat.completions.create, _OWNED
        )
        if max_tokens is not None:
            self._extra["max_tokens"] = max_tokens

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client the service calls (with the SDK's retries as configured)."""
        return self._client

    def wire_request(self, request: ChatRequest) -> dict[str, Any]:
        """Returns the keyword arguments ``call()`` passes to ``chat.completions.create``.

        Raises:
            ValueError: The conversation cannot be sent (a tool message without
                ``tool_call_id``).
        """
        kwargs: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": to_wire_messages(request.messages),
        }
        if request.tools:
            kwargs["tools"] = to_wire_tools(request.tools)
        if self._extra:
            kwargs.update(self._extra)
        return kwargs

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        kwargs = self.wire_request(request)
        try:
            completion, rate_limits = await create_reading_headers(self._create, kwargs)
        except self._error as exc:
            raise from_sdk_error(self._sdk, "openai", exc) from exc
        try:
            return to_outcome(request, completion, rate_limits=rate_limits)
        except UNREADABLE as exc:
            # a lax compatible server sent something the SDK let through unchecked
            request_id = getattr(completion, "_request_id", None)
            raise unreadable_answer("openai", exc, request_id=request_id) from exc

    def stream(self, request: ChatRequest) -> StepStream:
        """Makes the call streamed: the answer's events as they arrive (see `StepStream`).

        The request is sent when the stream is first read. The last event is the
        `ModelFinished` whose outcome ``call()`` would have returned.

        Raises:
            ValueError: At once: the conversation cannot be sent (see `wire_request`).
            ProviderError: While reading: the provider failed, before or during the answer
                (an error event in the stream, a connection cut), or the answer could not be
                read.
        """
        kwargs = self.wire_request(request)
        kwargs["stream"] = True
        kwargs.setdefault("stream_options", {"include_usage": True})
        events = read_stream(
            self._sdk,
            "openai",
            self._stream_create,
            kwargs,
            lambda request_id, limits: ChunkReader(
                request, request_id=request_id, rate_limits=limits
            ),
        )
        return StepStream(events)

    async def aclose(self) -> None:
        """Closes the client if the service built it; a client you passed stays open."""
        if self._owns_client:
            await self._client.close()

    @override
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model!r}, base_url={str(self._client.base_url)!r})"
