"""Gemini's answers as they arrive, and the wire structs the request shares with them.

The stream: CRLF-framed SSE with no sentinel; the chunk with ``finishReason`` ends it, and a bare
``{"error"}`` object can arrive inside a 200 stream. Tool calls arrive whole, with object arguments
and (on 2.x) no id, so the gateway makes one. A whole answer (``generateContent``) is one chunk.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from providers._errors import VendorError, common_error, in_band_error, to_float
from providers._http import WholeBody, decode_json
from providers._sse import SSEDecoder
from providers.base import (
    Event,
    Finish,
    FinishReason,
    ProviderError,
    ReasoningDelta,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamModel,
    Usage,
    new_tool_call_id,
)
from providers.request import JSON_ENCODER


class Camel(Struct, rename="camel", omit_defaults=True):
    """Gemini's JSON is camelCase; the fields here are not."""


class InlineData(Camel):
    mime_type: str
    data: str


class FunctionCall(Camel):
    name: str | None = None
    args: Any = None
    id: str | None = None  # Gemini 3 names its calls; 2.x does not, so the gateway makes an id


class FunctionResponse(Camel):
    name: str
    response: Any


class Part(Camel):
    text: str | None = None
    thought: bool | None = None  # in the stream: this text is reasoning
    inline_data: InlineData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought_signature: str | None = None


class Content(Camel):
    parts: list[Part] = []
    role: str | None = None


# The stream, as wire structs holding only the fields read (its parts are the request's Part).
class Candidate(Camel):
    content: Content | None = None
    finish_reason: str | None = None


class UsageMetadata(Camel):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None


class PromptFeedback(Camel):
    block_reason: str | None = None


class ErrorDetail(Camel):
    reason: str | None = None
    retry_delay: str | None = None


class WireError(Camel):
    """In a 200 stream, or as the whole body of an error status."""

    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[ErrorDetail] | None = None


class Chunk(Camel):
    candidates: list[Candidate] | None = None
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: PromptFeedback | None = None
    error: WireError | None = None


class FirstChunk(Chunk):
    model_version: str | None = None  # read from the first chunk only: every chunk repeats it


CHUNK_DECODER = msgspec.json.Decoder(Chunk)
FIRST_CHUNK_DECODER = msgspec.json.Decoder(FirstChunk)
SAFETY = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
SAFETY |= {"IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}  # the same refusals, of an image
FAILED = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}


class GeminiStream:
    """Reads Gemini's SSE stream (or, with ``whole``, one generateContent body) into canonical events.

    A body that starts with ``{`` or ``[`` instead of ``data:`` is read whole: Gemini sends errors
    that way, sometimes pretty-printed over several lines.
    """

    def __init__(self, provider: str, *, whole: bool = False):
        self.provider = provider
        self.sse = SSEDecoder()
        self.whole = whole
        self.started = False
        self.body = WholeBody(provider)
        self.tool_calls = 0
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.model_unread = True

    def feed(self, chunk: bytes) -> list[Event]:
        if not self.started and chunk.strip():
            self.started = True
            self.whole = self.whole or chunk.lstrip()[:1] in (b"{", b"[")
        if self.whole:
            return self.body.feed(chunk)
        events: list[Event] = []
        for sse in self.sse.feed(chunk):
            if self.model_unread:
                self.read(self.first(sse.data, events), events)
            else:
                self.read(decode_json(CHUNK_DECODER, sse.data, self.provider), events)
        return events

    def first(self, data: str | bytes, events: list[Event]) -> Chunk:
        """The first chunk, read with the model version that every chunk repeats."""
        self.model_unread = False
        chunk = decode_json(FIRST_CHUNK_DECODER, data, self.provider)
        if chunk.model_version:
            events.append(UpstreamModel(chunk.model_version))
        return chunk

    def end(self) -> list[Event]:
        events: list[Event] = []
        if self.whole:
            body = bytes(self.body.body).strip()
            self.read(self.first(body[1:-1] if body.startswith(b"[") else body, events), events)
        self.sse.flush()
        if self.finish_reason is None:
            raise StreamTruncatedError(
                f"{self.provider}'s stream ended without a finishReason, so the answer is incomplete. "
                "Retry the request."
            )
        return [*events, *([self.usage] if self.usage else []), Finish(self.finish())]

    def read(self, chunk: Chunk, events: list[Event]) -> None:
        if chunk.error is not None:
            error = chunk.error
            raise in_band_error(self.provider, error.message, error.code or error.status)
        if chunk.usage_metadata is not None:
            self.usage = usage_of(chunk.usage_metadata)
        if not chunk.candidates:
            feedback = chunk.prompt_feedback
            if feedback is not None and feedback.block_reason:
                self.finish_reason = "SAFETY"  # the prompt itself was blocked
            return
        candidate = chunk.candidates[0]
        for part in (candidate.content.parts if candidate.content else None) or ():
            self.read_part(part, events)
        if candidate.finish_reason:
            self.finish_reason = candidate.finish_reason

    def read_part(self, part: Part, events: list[Event]) -> None:
        if part.function_call is not None:
            call, index = part.function_call, self.tool_calls
            self.tool_calls += 1
            events.append(ToolCallStart(index, call.id or new_tool_call_id(), call.name or ""))
            events.append(ToolCallDelta(index, JSON_ENCODER.encode(call.args or {}).decode()))
        elif part.text:
            events.append(ReasoningDelta(part.text) if part.thought else TextDelta(part.text))

    def finish(self) -> FinishReason:
        reason = self.finish_reason
        if reason in FAILED:
            raise ProviderError(f"{self.provider} ended the answer with {reason}; retry the request.")
        if reason == "MAX_TOKENS":
            return "length"
        if reason in SAFETY:
            return "content_filter"
        return "tool_calls" if self.tool_calls else "stop"


def usage_of(usage: UsageMetadata) -> Usage:
    """Gemini counts thoughts apart from candidates; OpenAI's completion tokens include them."""
    thoughts = usage.thoughts_token_count or 0
    return Usage(
        prompt_tokens=(usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
        completion_tokens=(usage.candidates_token_count or 0) + thoughts,
        cached_tokens=usage.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )


def gemini_error(body: bytes) -> VendorError:
    """The common message, plus Gemini's retryDelay and its way of refusing a bad key with a 400."""
    common = common_error(body)
    try:
        error = CHUNK_DECODER.decode(body.strip().strip(b"[]")).error
    except msgspec.MsgspecError:
        return common
    details = (error.details if error else None) or []
    delay = next((d.retry_delay for d in details if d.retry_delay), None)
    auth = any(d.reason == "API_KEY_INVALID" for d in details)
    seconds = to_float(delay.rstrip("s")) if delay else None
    retry_after = max(seconds, 0.0) if seconds is not None else None
    return VendorError(common.message, retry_after, auth)
