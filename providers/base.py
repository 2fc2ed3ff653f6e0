"""Types shared by every provider and by the HTTP side: canonical events, the protocol, the errors.

A vendor's dialect never leaves its own module: each provider turns its upstream stream into the
small event structs below, and the HTTP side encodes those for the client.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Literal, Protocol

import msgspec

from providers.request import ChatRequest

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class Start(msgspec.Struct, frozen=True):
    """The upstream accepted the request; the response status can be committed."""


class UpstreamModel(msgspec.Struct, frozen=True):
    """The model the upstream says is answering (often a dated snapshot of the name it was sent), once,
    from its first event: what the client is told answered."""

    name: str


class TextDelta(msgspec.Struct, frozen=True):
    text: str


class ReasoningDelta(msgspec.Struct, frozen=True):
    text: str


class ReasoningSignature(msgspec.Struct, frozen=True):
    """The vendor's signature of the reasoning so far (Anthropic's), which its API wants back with it."""

    signature: str


class ToolCallStart(msgspec.Struct, frozen=True):
    index: int
    id: str
    name: str


class ToolCallDelta(msgspec.Struct, frozen=True):
    index: int
    arguments: str


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Finish(msgspec.Struct, frozen=True):
    reason: FinishReason
    stop_sequence: str | None = None  # which of the request's stop sequences ended it, when the vendor says


class ToolRun(msgspec.Struct, frozen=True):
    """The gateway is calling a tool on an MCP server for the model (its arguments complete)."""

    id: str
    name: str
    arguments: str
    server: str


class ToolResult(msgspec.Struct, frozen=True):
    """What a tool the gateway called answered; the model reads it in its next round."""

    id: str
    name: str
    server: str
    content: str
    is_error: bool
    duration_ms: float


class Verbatim(msgspec.Struct, frozen=True):
    """Part of the upstream's answer as its bytes came, for a client that speaks the upstream's own API.

    The provider sends the canonical events of the same part first (for timeouts, usage and the
    finish), and the client's dialect sends these bytes instead of its own. ``opening`` marks the
    event that opens an answer (Anthropic's ``message_start``), which a client must see only once.
    """

    data: bytes
    opening: bool = False


Event = (
    Start
    | UpstreamModel
    | TextDelta
    | ReasoningDelta
    | ReasoningSignature
    | ToolCallStart
    | ToolCallDelta
    | Usage
    | Finish
    | ToolRun
    | ToolResult
    | Verbatim
)


class Original(msgspec.Struct, frozen=True):
    """The client's request as it came, for an upstream that speaks the client's own API (``dialect``).

    ``verbatim``: ``fields`` is the whole body, which goes upstream with only the model rewritten, and
    the answer comes back as ``Verbatim`` bytes. Otherwise ``fields`` holds only the top-level fields
    the gateway does not know, which go upstream beside the ones it built. ``headers`` are the
    client's headers this API forwards (Anthropic's ``anthropic-beta`` and ``anthropic-version``).
    """

    dialect: str
    fields: dict[str, msgspec.Raw]
    headers: dict[str, str] = {}
    verbatim: bool = False


def digits_value(text: str) -> int | None:
    """``text`` as a whole number when it is ASCII digits only, else None.

    ``str.isdigit`` alone also takes "²" and other Unicode digits, which ``int`` refuses: a 500 waiting
    to happen wherever a client's or a peer's text is read as a number.
    """
    return int(text) if text.isascii() and text.isdigit() else None


def new_tool_call_id() -> str:
    """For vendors that send tool calls without an id (Gemini, older Ollama)."""
    return f"call_{uuid.uuid4().hex[:24]}"


# Events that carry part of the answer: they count for time to first token and idle timeouts.
CONTENT_EVENTS = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta, ToolRun, ToolResult)


class Timeouts(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Seconds each phase may take; ``None`` leaves it to the layer below (defaults, provider, model)."""

    connect: Annotated[float, msgspec.Meta(gt=0)] | None = None
    first_token: Annotated[float, msgspec.Meta(gt=0)] | None = None
    idle: Annotated[float, msgspec.Meta(gt=0)] | None = None
    total: Annotated[float, msgspec.Meta(gt=0)] | None = None

    def over(self, below: Timeouts | None) -> Timeouts:
        """These timeouts, falling back to ``below`` where unset."""
        if below is None:
            return self
        return Timeouts(
            self.connect or below.connect,
            self.first_token or below.first_token,
            self.idle or below.idle,
            self.total or below.total,
        )


class Deployment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One place a model is served: a provider, the model name it knows, for OpenAI which API, and
    (once resolved) the timeouts that apply to it."""

    provider: str
    model: str
    api: Literal["chat", "responses"] = "chat"
    timeouts: Timeouts | None = None


class Provider(Protocol):
    """One upstream vendor. ``stream`` yields ``Start`` once the upstream accepted the request."""

    name: str
    models: tuple[str, ...]

    def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]: ...

    async def aclose(self) -> None: ...


class SameDialectProvider(Provider, Protocol):
    """A provider that also takes the client's request in its own API as it came (see ``Original``)."""

    dialect: str

    def stream(
        self, request: ChatRequest, deployment: Deployment, original: Original | None = None
    ) -> AsyncGenerator[Event, None]: ...


class ProviderError(Exception):
    """An upstream failure, carrying the HTTP status and error code the client should see."""

    status: int = 502
    type: str = "upstream_error"
    code: str = "upstream_error"

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


class InvalidRequestError(ProviderError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthError(InvalidRequestError):
    """The prompt does not fit the model's context window: an alias's ``context_fallbacks`` take it."""

    code = "context_length_exceeded"


class ModelNotFoundError(ProviderError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RateLimitedError(ProviderError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class UpstreamUnavailableError(ProviderError):
    status = 503
    type = "upstream_error"
    code = "upstream_unavailable"


class UpstreamTimeoutError(ProviderError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamAuthError(ProviderError):
    """The provider refused the gateway's own credentials: the operator's problem, never the client's."""

    code = "upstream_auth_error"


class UpstreamProtocolError(ProviderError):
    """The provider sent something that is not its documented stream."""

    code = "upstream_protocol_error"


class ToolLoopLimitError(ProviderError):
    """The model was still calling the gateway's tools when the round limit came."""

    code = "tool_loop_limit"


class StreamTruncatedError(ProviderError):
    """The upstream stream ended without the vendor's terminator or a finish reason."""

    code = "stream_truncated"

    def __init__(
        self,
        message: str = "The provider's stream ended before the answer was finished, so the answer is "
        "incomplete. Retry the request.",
    ):
        super().__init__(message)
