"""The native dialect: a small event model (token, reasoning, tool_call, complete, error) for browsers
and simple clients, framed as named SSE events with ids, as WebSocket JSON frames, or as one JSON body.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct
from starlette.responses import Response

from app.dialects.answer import AnswerBuilder, Ending, ToolCallParts
from app.dialects.base import KEEPALIVE, Summary
from app.errors import ApiError, error_response
from providers.base import (
    Event,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolResult,
    ToolRun,
    Usage,
)
from providers.request import ChatRequest

ENCODER = msgspec.json.Encoder()


class NativeUsage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int

    @classmethod
    def of(cls, usage: Usage | None) -> NativeUsage:
        usage = usage or Usage()
        return cls(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
            usage.cached_tokens,
            usage.reasoning_tokens,
        )


class ToolCallOut(Struct):
    index: int
    id: str
    name: str
    arguments: str


class Complete(Struct, omit_defaults=True):
    message_id: str
    finish_reason: FinishReason
    usage: NativeUsage
    model: str
    provider: str | None
    ttft_ms: float | None
    duration_ms: float
    rescued: dict[str, object] | None = None  # set only when a fallback continued the answer


class Answer(Complete, omit_defaults=True, kw_only=True):
    """The whole answer when the client did not ask for a stream: ``complete`` plus the content."""

    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class NativeEvents:
    """Canonical events as (name, payload); tool calls are held until their arguments are complete."""

    def __init__(self) -> None:
        self.ending = Ending()

    def read(self, event: Event) -> tuple[str, Any] | None:
        match event:
            case TextDelta(text=text):
                return "token", {"content": text}
            case ReasoningDelta(text=text):
                return "reasoning", {"content": text}
            case ToolRun(id=call_id, name=name, arguments=arguments, server=server):
                return "tool_call", {"id": call_id, "name": name, "arguments": arguments, "server": server}
            case ToolResult():
                return "tool_result", event
        self.ending.take(event)
        return None

    def closing(self, summary: Summary) -> list[tuple[str, Any]]:
        ending = self.ending
        calls = [("tool_call", call) for call in tool_calls(ending.calls)]
        assert ending.finish is not None
        complete = completion(summary, ending.finish, ending.usage)
        return [*calls, ("complete", complete)]


def tool_calls(calls: ToolCallParts) -> list[ToolCallOut]:
    return [ToolCallOut(c.index, c.id, c.name, c.arguments) for c in calls.finished()]


class NativeEncoding:
    """What the native encoders share: the event builder, what it learned of usage and the finish,
    and the encoder interface, framed by each subclass's ``frame``."""

    events: NativeEvents

    @property
    def finished(self) -> bool:
        return self.events.ending.finished

    @property
    def usage(self) -> Usage | None:
        return self.events.ending.usage

    @property
    def finish(self) -> FinishReason | None:
        return self.events.ending.finish

    def frame(self, name: str, payload: Any) -> bytes:
        """One named event on the wire; the one thing the native encoders do differently."""
        raise NotImplementedError

    def serve(self, model: str) -> None:
        return None  # the model is in the closing event, from the exchange's summary

    def opening(self) -> bytes | None:
        return None

    def encode(self, event: Event) -> bytes | None:
        item = self.events.read(event)
        return self.frame(*item) if item is not None else None

    def end(self, summary: Summary) -> list[bytes]:
        return [self.frame(name, payload) for name, payload in self.events.closing(summary)]

    def error(self, error: ApiError, request_id: str) -> bytes:
        return self.frame("error", {"error": error.body(request_id)})


class NativeSSEEncoder(NativeEncoding):
    """Named SSE events, each with an ``id:`` line, so a client can tell where it stopped."""

    def __init__(self) -> None:
        self.events = NativeEvents()
        self.next_id = 0

    def frame(self, name: str, payload: Any) -> bytes:
        self.next_id += 1
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.next_id, name.encode(), ENCODER.encode(payload))


class WebSocketEncoder(NativeEncoding):
    """One JSON text frame per event, each naming its ``type`` and the client's ``request_id``."""

    def __init__(self, request_id: str):
        self.events = NativeEvents()
        self.request_id = request_id

    def frame(self, name: str, payload: Any) -> bytes:
        return socket_frame(name, self.request_id, payload)

    def error(self, error: ApiError, request_id: str) -> bytes:
        return socket_error(self.request_id, error)


def socket_frame(name: str, request_id: str | None, payload: Any) -> bytes:
    return ENCODER.encode({"type": name, "request_id": request_id, **msgspec.to_builtins(payload)})


def socket_error(request_id: str | None, error: ApiError) -> bytes:
    """The one WebSocket error frame: for a chat that failed, and for a frame the socket refused."""
    return socket_frame("error", request_id, {"error": error.body(request_id or "")})


def completion(summary: Summary, finish: FinishReason, usage: Usage | None) -> Complete:
    """The ``complete`` event: what the exchange knows, and how the answer ended."""
    return Complete(
        summary.message_id,
        finish,
        NativeUsage.of(usage),
        summary.model,
        summary.provider,
        summary.ttft_ms,
        summary.duration_ms,
        summary.rescued,
    )


class NativeChat:
    """The dialect of ``POST /api/v1/chat``: named SSE events, or one JSON body."""

    id_prefix = "msg_"
    keepalive = KEEPALIVE

    def stream(self, chat: ChatRequest, answer_id: str) -> NativeEncoding:
        return NativeSSEEncoder()

    def error_response(self, error: ApiError, request_id: str) -> Response:
        return error_response(error, request_id)

    def whole(self, answer: AnswerBuilder, summary: Summary) -> bytes:
        """``complete``'s fields, plus the content, reasoning and tool calls."""
        assert answer.finish is not None
        calls = tool_calls(answer.tool_calls)
        base = msgspec.structs.asdict(completion(summary, answer.finish, answer.usage))
        content, reasoning = "".join(answer.text), "".join(answer.reasoning) or None
        return ENCODER.encode(Answer(**base, content=content, reasoning=reasoning, tool_calls=calls or None))


class NativeSocket(NativeChat):
    """The native dialect on a WebSocket: one JSON frame per event, each naming its chat's request id."""

    def __init__(self, request_id: str):
        self.request_id = request_id

    def stream(self, chat: ChatRequest, answer_id: str) -> NativeEncoding:
        return WebSocketEncoder(self.request_id)


NATIVE_CHAT = NativeChat()
