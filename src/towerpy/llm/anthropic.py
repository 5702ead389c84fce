"""`AnthropicModel`: one Messages API call per step, through the official ``anthropic`` SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from typing_extensions import override

from .._ratelimits import create_reading_headers
from .._service import Service
from .._validate import check_instance, check_int, check_positive_int, check_str
from ._anthropic_stream import EventReader
from ._anthropic_wire import to_outcome, to_wire, to_wire_tools
from ._errors import from_sdk_error, unreadable_answer
from ._sdk import UNREADABLE, check_params, import_sdk, read_stream
from .events import StepStream
from .messages import ChatRequest, StepOutcome

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    import anthropic

__all__ = ["AnthropicModel"]

_OWNED = ("model", "messages", "system", "tools", "stream", "max_tokens")


@final
class AnthropicModel(Service[ChatRequest, StepOutcome], direct_call=True):
    """A step service that makes one Anthropic Messages API call per request.

    The conversion follows the Messages API's rules: system messages go to the top-level
    ``system`` field (joined with a blank line), consecutive turns of one role are merged so
    that every tool result of a batch travels in ONE user message (``tool_result`` blocks first,
    ``is_error`` on the failed ones), and tool call ids from other providers are rewritten to
    ``^[a-zA-Z0-9_-]+$`` the same way on ``tool_use`` and ``tool_result``.

    ``ready()`` returns at once: the service has no capacity of its own. ``call()`` converts the
    request, awaits the SDK and converts the answer: text blocks are joined, ``tool_use`` blocks
    become tool calls, and ``done`` is True exactly when the model asked for no tool. Extended
    thinking and server tools are not supported yet: their blocks are not kept.
    ``stream(request)`` makes the same call streamed (``stream=True``): a `StepStream` of text
    deltas and tool calls as they arrive, each call complete when its ``tool_use`` block stops,
    then the outcome ``call()`` would have returned. The object is safe to share between any
    number of tasks.

    The SDK's own retries are off (``max_retries=0``, also on a client you pass in, through
    ``client.with_options``) so that `RetryLayer` is the one place retries happen.

    Args:
        model: The model name. A request's own ``model`` wins.
        client: An ``anthropic.AsyncAnthropic`` to use. Without one, the service builds one
            from ``base_url`` and ``api_key`` (default: ``ANTHROPIC_BASE_URL`` /
            ``ANTHROPIC_API_KEY``) and closes it on ``__aexit__``; a client you pass is yours to
            close.
        base_url: The server's URL. Only without ``client``.
        api_key: The API key. Only without ``client``.
        sdk_max_retries: The SDK's own retries; ``None`` keeps the client's setting.
        max_tokens: The most tokens the model may generate per call (the API requires it).
        params: More keyword arguments for every ``messages.create`` call (``tool_choice``,
            ``stop_sequences``, ``metadata``, ``extra_body``, ...), checked against the SDK's
            signature here.

    Raises:
        ImportError: The ``anthropic`` package is not installed
            (``pip install 'towerpy[anthropic]'``).
        ValueError: An empty ``model``, ``client`` together with ``base_url``/``api_key``, a
            negative ``sdk_max_retries``, ``max_tokens`` below 1, or ``params`` setting a field
            the service sets.
        TypeError: An argument of the wrong type (``model`` not a str, ``sdk_max_retries`` or
            ``max_tokens`` not an int, ``client`` not an ``anthropic.AsyncAnthropic``,
            ``params`` not a mapping), or ``params`` names a parameter the SDK does not take.
        ProviderError: From ``call()``: the provider failed (`RateLimited` on 429,
            `ProviderUnavailable` on 5xx, 529 overloaded, timeouts and connection errors), with
            ``status_code``, ``retry_after``, ``retryable`` and the SDK's exception as
            ``__cause__``.
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
        client: anthropic.AsyncAnthropic | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        sdk_max_retries: int | None = 0,
        max_tokens: int = 4096,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        sdk = import_sdk("anthropic", "anthropic", "AnthropicModel")
        check_str("model", model, empty=False)
        if sdk_max_retries is not None:
            check_int("sdk_max_retries", sdk_max_retries, minimum=0)
        check_positive_int("max_tokens", max_tokens)
        if client is None:
            options: dict[str, Any] = {"base_url": base_url, "api_key": api_key}
            if sdk_max_retries is not None:
                options["max_retries"] = sdk_max_retries
            client = sdk.AsyncAnthropic(**options)
            self._owns_client = True
        else:
            if base_url is not None or api_key is not None:
                raise ValueError(
                    "AnthropicModel: pass either client= or base_url=/api_key=, not both "
                    "(configure the client you pass instead)"
                )
            check_instance(
                "client", client, sdk.AsyncAnthropic, "an anthropic.AsyncAnthropic client"
            )
            if sdk_max_retries is not None and client.max_retries != sdk_max_retries:
                client = client.with_options(max_retries=sdk_max_retries)  # shares the pool
            self._owns_client = False
        self.model = model
        self._sdk = sdk
        self._client = client
        # the raw form gives the response headers too: the quota they report (rate_limits)
        self._create = client.messages.with_raw_response.create
        # a stream's own response carries the headers: the plain create
        self._stream_create = client.messages.create
        self._error: type[Exception] = sdk.APIError
        self._extra = check_params("AnthropicModel", params, client.messages.create, _OWNED)
        self._extra["max_tokens"] = max_tokens

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client the service calls (with the SDK's retries as configured)."""
        return self._client

    def wire_request(self, request: ChatRequest) -> dict[str, Any]:
        """Returns the keyword arguments ``call()`` passes to ``messages.create``.

        Raises:
            ValueError: The conversation cannot be sent (a tool message without
                ``tool_call_id``).
        """
        system, messages = to_wire(request.messages)
        kwargs: dict[str, Any] = {"model": request.model or self.model, "messages": messages}
        if system is not None:
            kwargs["system"] = system
        if request.tools:
            kwargs["tools"] = to_wire_tools(request.tools)
        kwargs.update(self._extra)
        return kwargs

    @override
    async def call(self, request: ChatRequest) -> StepOutcome:
        kwargs = self.wire_request(request)
        try:
            message, rate_limits = await create_reading_headers(self._create, kwargs)
        except self._error as exc:
            raise from_sdk_error(self._sdk, "anthropic", exc) from exc
        try:
            return to_outcome(request, message, rate_limits=rate_limits)
        except UNREADABLE as exc:
            # a lax compatible server sent something the SDK let through unchecked
            request_id = getattr(message, "_request_id", None)
            raise unreadable_answer("anthropic", exc, request_id=request_id) from exc

    def stream(self, request: ChatRequest) -> StepStream:
        """Makes the call streamed: the answer's events as they arrive (see `StepStream`).

        The request is sent when the stream is first read. The last event is the
        `ModelFinished` whose outcome ``call()`` would have returned.

        Raises:
            ValueError: At once: the conversation cannot be sent (see `wire_request`).
            ProviderError: While reading: the provider failed, before or during the answer
                (an ``error`` event such as ``overloaded_error``, a connection cut), or the
                answer could not be read.
        """
        kwargs = self.wire_request(request)
        kwargs["stream"] = True
        events = read_stream(
            self._sdk,
            "anthropic",
            self._stream_create,
            kwargs,
            lambda request_id, limits: EventReader(
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
        return f"AnthropicModel({self.model!r}, base_url={str(self._client.base_url)!r})"
