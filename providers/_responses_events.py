"""The Responses API's answers as they arrive: its typed event stream, or one whole ``response``,
read into canonical events (and, for a Responses client, passed on as they came). The terminal event
is ``response.completed``, ``.incomplete``, ``.failed`` or ``error``, with no ``[DONE]``. Tool calls
are keyed by ``item_id``; arguments may come only in ``.done``.
"""

from __future__ import annotations

from collections.abc import Callable
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
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamModel,
    Usage,
    Verbatim,
)


# The stream, as wire structs holding only the fields read.
class Item(Struct):
    type: str = ""
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class InputDetails(Struct):
    cached_tokens: int | None = None


class OutputDetails(Struct):
    reasoning_tokens: int | None = None


class WireUsage(Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: InputDetails | None = None
    output_tokens_details: OutputDetails | None = None


class ErrorInfo(Struct):
    code: str | None = None
    message: str | None = None
    type: str | None = None


class IncompleteDetails(Struct):
    reason: str | None = None


class OutputKind(Struct):
    type: str = ""


class Response(Struct):
    usage: WireUsage | None = None
    model: str | None = None
    error: ErrorInfo | None = None
    incomplete_details: IncompleteDetails | None = None
    status: str | None = None
    output: list[OutputKind] = []


class WireEvent(Struct):
    type: str = ""
    delta: Any = None
    item: Item | None = None
    item_id: str | None = None
    arguments: str | None = None
    response: Response | None = None
    code: str | None = None
    message: str | None = None
    error: ErrorInfo | None = None


EVENT_DECODER = msgspec.json.Decoder(WireEvent)
INCOMPLETE_REASONS: dict[str | None, FinishReason] = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesStream:
    """Reads a Responses API event stream into canonical events; the terminal event ends it.

    With ``relay`` (a Responses client), each event's canonical events are followed by its bytes as
    they came; ``error`` and ``response.failed`` are raised as before, never relayed.
    """

    def __init__(self, provider: str, relay: bool = False):
        self.provider = provider
        self.relay = relay
        self.sse = SSEDecoder(keep_raw=relay)
        self.tool_index: dict[str, int] = {}
        self.with_arguments: set[str] = set()
        self.done = False
        self.handlers: dict[str, Callable[[WireEvent], list[Event]]] = {
            "response.created": self.on_created,
            "response.output_text.delta": self.on_text,
            "response.refusal.delta": self.on_text,
            "response.reasoning_summary_text.delta": self.on_reasoning,
            "response.reasoning_text.delta": self.on_reasoning,
            "response.output_item.added": self.on_item_added,
            "response.function_call_arguments.delta": self.on_arguments,
            "response.function_call_arguments.done": self.on_arguments_done,
            "response.completed": self.on_completed,
            "response.incomplete": self.on_incomplete,
            "response.failed": self.on_failed,
            "error": self.on_error,
        }

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        for sse in self.sse.feed(chunk):
            if self.done:
                continue
            event = decode_json(EVENT_DECODER, sse.data, self.provider)
            handler = self.handlers.get(event.type)
            if handler is not None:
                events += handler(event)
            if self.relay:
                events.append(Verbatim(sse.raw, opening=event.type in OPENINGS))
        return events

    def end(self) -> list[Event]:
        self.sse.flush()
        if not self.done:
            raise StreamTruncatedError(
                f"{self.provider}'s stream ended before its terminal event, so the answer is incomplete. "
                "Retry the request."
            )
        return []

    def on_created(self, event: WireEvent) -> list[Event]:
        model = event.response.model if event.response is not None else None
        return [UpstreamModel(model)] if model else []

    def on_text(self, event: WireEvent) -> list[Event]:
        return [TextDelta(event.delta)] if isinstance(event.delta, str) and event.delta else []

    def on_reasoning(self, event: WireEvent) -> list[Event]:
        return [ReasoningDelta(event.delta)] if isinstance(event.delta, str) and event.delta else []

    def on_item_added(self, event: WireEvent) -> list[Event]:
        item = event.item
        if item is None or item.type != "function_call" or item.id is None:
            return []
        index = self.tool_index[item.id] = len(self.tool_index)
        events: list[Event] = [ToolCallStart(index, item.call_id or item.id, item.name or "")]
        if item.arguments:
            self.with_arguments.add(item.id)
            events.append(ToolCallDelta(index, item.arguments))
        return events

    def on_arguments(self, event: WireEvent) -> list[Event]:
        index = self.tool_index.get(event.item_id or "")
        if index is None or not isinstance(event.delta, str) or not event.delta:
            return []
        self.with_arguments.add(event.item_id or "")
        return [ToolCallDelta(index, event.delta)]

    def on_arguments_done(self, event: WireEvent) -> list[Event]:
        """Some servers send the arguments only here; send them when no delta carried them."""
        item_id = event.item_id or ""
        index = self.tool_index.get(item_id)
        if index is None or item_id in self.with_arguments or not event.arguments:
            return []
        self.with_arguments.add(item_id)
        return [ToolCallDelta(index, event.arguments)]

    def on_completed(self, event: WireEvent) -> list[Event]:
        return self.closing(event, "tool_calls" if self.tool_index else "stop")

    def on_incomplete(self, event: WireEvent) -> list[Event]:
        details = event.response.incomplete_details if event.response else None
        return self.closing(event, INCOMPLETE_REASONS.get(details.reason if details else None, "length"))

    def on_failed(self, event: WireEvent) -> list[Event]:
        error = (event.response.error if event.response else None) or ErrorInfo()
        raise in_band_error(self.provider, error.message or "the response failed", error.code or error.type)

    def on_error(self, event: WireEvent) -> list[Event]:
        error = event.error or ErrorInfo(event.code, event.message)
        raise in_band_error(self.provider, error.message, error.code or error.type)

    def closing(self, event: WireEvent, reason: FinishReason) -> list[Event]:
        self.done = True
        usage = event.response.usage if event.response else None
        return [*([usage_of(usage)] if usage else []), Finish(reason)]


OPENINGS = frozenset({"response.created", "response.in_progress"})
RESPONSE_DECODER = msgspec.json.Decoder(Response)


class ResponsesAnswer(WholeBody):
    """Reads a whole (not streamed) response object, for a Responses client that asked for one: its
    usage and how it ended once it is complete, then its bytes as they came."""

    def end(self) -> list[Event]:
        response = decode_json(RESPONSE_DECODER, bytes(self.body), self.provider)
        if response.status == "failed":
            error = response.error or ErrorInfo()
            raise in_band_error(self.provider, error.message or "the response failed", error.code or error.type)
        if response.status == "incomplete":
            details = response.incomplete_details
            reason = INCOMPLETE_REASONS.get(details.reason if details else None, "length")
        else:
            reason = "tool_calls" if any(item.type.endswith("call") for item in response.output) else "stop"
        usage = [usage_of(response.usage)] if response.usage else []
        model = [UpstreamModel(response.model)] if response.model else []
        return [*model, *usage, Finish(reason), Verbatim(bytes(self.body))]


def usage_of(usage: WireUsage) -> Usage:
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else None
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else None
    return Usage(usage.input_tokens or 0, usage.output_tokens or 0, cached or 0, reasoning or 0)
