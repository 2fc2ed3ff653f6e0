"""Anthropic's answers as they arrive: the Messages event stream, or one whole ``message``, read into
canonical events (and, for a Messages client, passed on as they came). ``anthropic`` builds the
requests and holds the provider.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from providers._errors import in_band_error
from providers._http import WholeBody, decode_json
from providers._sse import SSEDecoder
from providers.base import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningSignature,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamModel,
    Usage,
    Verbatim,
)
from providers.request import JSON_ENCODER


# The stream, as wire structs holding only the fields read.
class WireBlock(Struct):
    type: str = ""
    id: str | None = None
    name: str | None = None
    text: str | None = None
    thinking: str | None = None


class WireDelta(Struct):
    type: str = ""
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None
    signature: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class WireUsage(Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class WireMessage(Struct):
    usage: WireUsage | None = None
    model: str | None = None


class WireError(Struct):
    type: str = ""
    message: str = ""


class WireEvent(Struct):
    type: str = ""
    index: int = 0
    message: WireMessage | None = None
    content_block: WireBlock | None = None
    delta: WireDelta | None = None
    usage: WireUsage | None = None
    error: WireError | None = None


EVENT_DECODER = msgspec.json.Decoder(WireEvent)
STOP_REASONS: dict[str | None, FinishReason] = {
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish(stop_reason: str | None, stop_sequence: str | None) -> Finish:
    stopped_by = stop_sequence if stop_reason == "stop_sequence" else None
    return Finish(STOP_REASONS.get(stop_reason, "stop"), stopped_by)


USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicStream:
    """Reads a Messages SSE stream into canonical events; ``message_stop`` is the terminator.

    With ``relay`` (a Messages client), each event's canonical events are followed by its bytes as
    they came, for the client; an ``error`` event is raised as before, never relayed.
    """

    def __init__(self, provider: str, relay: bool = False):
        self.provider = provider
        self.relay = relay
        self.sse = SSEDecoder(keep_raw=relay)
        self.tool_index: dict[int, int] = {}  # content block index -> tool call index
        self.with_arguments: set[int] = set()
        self.counts: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.done = False

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        for sse in self.sse.feed(chunk):
            if self.done:
                continue
            event = decode_json(EVENT_DECODER, sse.data, self.provider)
            self.read(event, events)
            if self.relay:
                events.append(Verbatim(sse.raw, opening=event.type == "message_start"))
        return events

    def end(self) -> list[Event]:
        self.sse.flush()
        if not self.done:
            raise StreamTruncatedError(
                f"{self.provider}'s stream ended before message_stop, so the answer is incomplete. Retry the request."
            )
        return []

    def read(self, event: WireEvent, events: list[Event]) -> None:
        match event.type:
            case "content_block_delta" if event.delta is not None:
                self.read_delta(event.index, event.delta, events)
            case "content_block_start" if event.content_block is not None:
                self.read_block_start(event.index, event.content_block, events)
            case "content_block_stop" if event.index in self.tool_index and event.index not in self.with_arguments:
                events.append(ToolCallDelta(self.tool_index[event.index], "{}"))  # a call without arguments
            case "message_start" if event.message is not None:
                self.count(event.message.usage)
                if event.message.model:
                    events.append(UpstreamModel(event.message.model))
            case "message_delta":
                self.count(event.usage)
                self.stop_reason = (event.delta.stop_reason if event.delta else None) or self.stop_reason
                self.stop_sequence = (event.delta.stop_sequence if event.delta else None) or self.stop_sequence
            case "message_stop":
                self.done = True
                events += [self.usage(), finish(self.stop_reason, self.stop_sequence)]
            case "error":
                error = event.error or WireError()
                raise in_band_error(self.provider, error.message, error.type)

    def read_delta(self, index: int, delta: WireDelta, events: list[Event]) -> None:
        if delta.text:
            events.append(TextDelta(delta.text))
        elif delta.thinking:
            events.append(ReasoningDelta(delta.thinking))
        elif delta.partial_json and index in self.tool_index:
            self.with_arguments.add(index)
            events.append(ToolCallDelta(self.tool_index[index], delta.partial_json))
        elif delta.signature:
            events.append(ReasoningSignature(delta.signature))

    def read_block_start(self, index: int, block: WireBlock, events: list[Event]) -> None:
        if block.type == "tool_use":
            self.tool_index[index] = len(self.tool_index)
            events.append(ToolCallStart(self.tool_index[index], block.id or "", block.name or ""))
        elif block.text:
            events.append(TextDelta(block.text))
        elif block.thinking:
            events.append(ReasoningDelta(block.thinking))

    def count(self, usage: WireUsage | None) -> None:
        count(self.counts, usage)

    def usage(self) -> Usage:
        return usage_of(self.counts)


def count(counts: dict[str, int], usage: WireUsage | None) -> None:
    """Usage is cumulative and restated: the last value of each field wins."""
    if usage is not None:
        for field in USAGE_FIELDS:
            value = getattr(usage, field)
            if value is not None:
                counts[field] = value


def usage_of(counts: dict[str, int]) -> Usage:
    """Anthropic counts cache reads and writes apart from the input; the canonical prompt holds all three."""
    cached = counts.get("cache_read_input_tokens", 0)
    prompt = counts.get("input_tokens", 0) + counts.get("cache_creation_input_tokens", 0) + cached
    return Usage(prompt_tokens=prompt, completion_tokens=counts.get("output_tokens", 0), cached_tokens=cached)


class WireContent(Struct):
    type: str = ""
    id: str = ""
    name: str = ""
    text: str = ""
    thinking: str = ""
    signature: str = ""
    input: Any = None


class WireAnswer(Struct):
    content: list[WireContent] = []
    model: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: WireUsage | None = None


ANSWER_DECODER = msgspec.json.Decoder(WireAnswer)


class AnthropicAnswer(WholeBody):
    """Reads a whole (not streamed) Messages answer, for a Messages client that asked for one: its
    canonical events once it is complete, then its bytes as they came."""

    def end(self) -> list[Event]:
        answer = decode_json(ANSWER_DECODER, bytes(self.body), self.provider)
        events: list[Event] = [UpstreamModel(answer.model)] if answer.model else []
        calls = 0
        for block in answer.content:
            if block.type == "tool_use":
                arguments = JSON_ENCODER.encode(block.input if block.input is not None else {}).decode()
                events += [ToolCallStart(calls, block.id, block.name), ToolCallDelta(calls, arguments)]
                calls += 1
            elif block.text or block.thinking:
                events.append(TextDelta(block.text) if block.text else ReasoningDelta(block.thinking))
            if block.signature:
                events.append(ReasoningSignature(block.signature))
        counts: dict[str, int] = {}
        count(counts, answer.usage)
        return [*events, usage_of(counts), finish(answer.stop_reason, answer.stop_sequence), Verbatim(bytes(self.body))]
