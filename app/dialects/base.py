"""What a client dialect is to the exchange: an encoder for a streamed answer and a whole-answer body.

A dialect turns the canonical events into its client's bytes and nothing else; the exchange decides
when to send them. One module per dialect implements ``Dialect``: ``openai`` (Chat Completions) and
``native`` (named SSE events, WebSocket frames).
"""

from __future__ import annotations

from typing import Protocol

from msgspec import Struct
from starlette.responses import Response

from app.dialects.answer import AnswerBuilder
from app.errors import ApiError
from providers.base import Event, FinishReason, Usage
from providers.request import ChatRequest


class Summary(Struct):
    """What the exchange knows at the end of an answer, for the closing frames and the whole body."""

    message_id: str
    model: str
    provider: str | None
    ttft_ms: float | None
    duration_ms: float
    rescued: dict[str, object] | None = None  # how a fallback continued an answer whose upstream broke


class StreamEncoder(Protocol):
    """One stream's events as frames; ``finished`` turns true once the upstream said how it ended."""

    @property
    def finished(self) -> bool: ...

    @property
    def usage(self) -> Usage | None: ...

    @property
    def finish(self) -> FinishReason | None: ...

    def serve(self, model: str) -> None:
        """The model answering from now on (the deployment's, then the upstream's own name for it):
        the frames after this name it."""

    def opening(self) -> bytes | None:
        """The frame sent once the upstream has answered, before any content (OpenAI's role chunk)."""

    def encode(self, event: Event) -> bytes | None: ...

    def end(self, summary: Summary) -> list[bytes]:
        """The frames that close a complete answer."""

    def error(self, error: ApiError, request_id: str) -> bytes:
        """The frame that ends a stream that failed, so no client takes it for a clean ending."""


class Translation:
    """A request's translation into the canonical one, and the first thing it could not carry: left
    out and noted, as the 400 that says so for any upstream that does not speak the client's API."""

    only = ""  # who takes what cannot be translated: "Anthropic's Messages API"
    instead = ""  # the model to use for it: "a model served by Anthropic"

    def __init__(self) -> None:
        self.problem: ApiError | None = None

    def cannot(self, what: str, instead: str) -> None:
        if self.problem is None:
            self.problem = ApiError(
                400,
                f"This gateway cannot pass {what} on to this model's provider; only {self.only} takes it. "
                f"{instead}, or use {self.instead}.",
                code="unsupported_content",
            )


KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: every SSE client skips it


class Dialect(Protocol):
    id_prefix: str  # answer ids start with it: chatcmpl-..., msg_...
    keepalive: bytes  # what a silent stream sends, so proxies do not cut it

    def error_response(self, error: ApiError, request_id: str) -> Response:
        """An error before anything was sent, in the envelope this dialect's clients parse."""

    def stream(self, chat: ChatRequest, answer_id: str) -> StreamEncoder:
        """A new encoder for one streamed answer."""

    def whole(self, answer: AnswerBuilder, summary: Summary) -> bytes:
        """The body of an answer that was not streamed."""
