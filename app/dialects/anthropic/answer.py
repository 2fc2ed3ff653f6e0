"""Anthropic's Messages answer: canonical events as its event stream, or as one ``message`` body.

``message_start``; per content block ``content_block_start``, its deltas (``text_delta``,
``thinking_delta`` and ``signature_delta``, ``input_json_delta``) and ``content_block_stop``; then
``message_delta`` (stop reason, usage) and ``message_stop``. Tool calls stream as they come, each its
own block, in order. A failure after the stream began is ``event: error`` and no ``message_stop``; before it,
Anthropic's envelope ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from starlette.responses import Response

from app.dialects.answer import AnswerBuilder, Ending, EndingView, FinishedCall
from app.dialects.base import Summary
from app.errors import ApiError
from providers.base import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningSignature,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamProtocolError,
    Usage,
)
from providers.request import ChatRequest

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"%s_delta","%s":'
)
ENCODER = msgspec.json.Encoder()


def frame(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), ENCODER.encode({"type": name, **payload}))


def usage_out(usage: Usage | None) -> dict[str, int]:
    """Anthropic counts cache reads apart from the input; the canonical prompt tokens include them."""
    usage = usage or Usage()
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def stop(finish: FinishReason, stop_sequence: str | None) -> dict[str, str | None]:
    """``stop_reason`` and ``stop_sequence``: a stop sequence when the upstream named the one it met."""
    if finish == "stop" and stop_sequence is not None:
        return {"stop_reason": "stop_sequence", "stop_sequence": stop_sequence}
    return {"stop_reason": STOP_REASONS[finish], "stop_sequence": None}


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_detail(error: ApiError) -> dict[str, str]:
    return {"type": error_type(error.status), "message": error.message}


def error_body(error: ApiError, request_id: str) -> bytes:
    return ENCODER.encode({"type": "error", "error": error_detail(error), "request_id": request_id})


def tool_input(call: FinishedCall) -> dict[str, Any]:
    """The call's arguments as the object Anthropic's clients expect; text that is not one is wrapped."""
    try:
        value = orjson.loads(call.arguments.strip() or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": call.arguments}
    return value if isinstance(value, dict) else {"value": value}


class MessagesEncoder(EndingView):
    """One answer as Anthropic's event stream; ``finished`` turns true at the upstream's finish.

    One content block is open at a time, as Anthropic's clients expect: text, thinking (closed by its
    signature's delta when the upstream signs it) or a tool call, whose input streams as the
    upstream's argument fragments come. An upstream that interleaves the fragments of parallel calls
    cannot be framed so: that is an error event, never a call with another's arguments.
    """

    def __init__(self, message_id: str, model: str):
        self.message_id, self.model = message_id, model
        self.blocks = 0  # content blocks started so far; the open one, if any, is the last
        self.open: str | None = None  # "text", "thinking" or "tool_use"
        self.open_call = -1  # the index of the tool call whose block is open
        self.held: list[str] | None = None  # its arguments so far, until they are seen to open an object
        self.delta_head = b""  # the open block's delta frame, up to its text
        self.ending = Ending()

    def serve(self, model: str) -> None:
        self.model = model

    def opening(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_out(None),
        }
        return frame("message_start", {"message": message})

    def encode(self, event: Event) -> bytes | None:
        match event:
            case TextDelta(text=text):
                return self.delta("text", text)
            case ReasoningDelta(text=text):
                return self.delta("thinking", text)
            case ToolCallDelta(index=index, arguments=arguments):
                return self.tool_input(index, arguments)
            case ToolCallStart(id=call_id, name=name):
                opened = self.close() + self.start({"type": "tool_use", "id": call_id, "name": name, "input": {}})
                self.open, self.open_call, self.held = "tool_use", event.index, []
                return opened
            case ReasoningSignature(signature=signature) if self.open == "thinking":
                return self.block_delta({"type": "signature_delta", "signature": signature})
            case Finish():
                self.ending.take(event)
                return self.close()
        self.ending.take(event)
        return None

    def delta(self, kind: str, text: str) -> bytes:
        """A text or thinking delta: the frame's bytes up to the text are made once per block."""
        start = b""
        if self.open != kind:
            start = self.close() + self.start({"type": kind, kind: ""} if kind == "text" else self.thinking())
            self.open = kind
            self.delta_head = DELTA_HEAD % (self.blocks - 1, kind.encode(), kind.encode())
        return b"".join((start, self.delta_head, ENCODER.encode(text), b"}}\n\n"))

    def tool_input(self, index: int, arguments: str) -> bytes | None:
        """Arguments that open a JSON object stream as they come; anything else is held for ``close`` to
        send wrapped as an object, which is all Anthropic's clients take."""
        if self.open != "tool_use" or index != self.open_call:
            raise UpstreamProtocolError(
                "The provider interleaved the arguments of parallel tool calls, which Anthropic's event stream "
                "cannot carry. Retry the request, or ask for one tool call at a time (disable_parallel_tool_use)."
            )
        if self.held is not None:
            self.held.append(arguments)
            so_far = "".join(self.held)
            if so_far.lstrip()[:1] != "{":
                return None  # blank so far, or not an object
            arguments, self.held = so_far, None
        if not arguments:
            return None
        return self.block_delta({"type": "input_json_delta", "partial_json": arguments})

    def thinking(self) -> dict[str, Any]:
        return {"type": "thinking", "thinking": "", "signature": ""}

    def start(self, block: dict[str, Any]) -> bytes:
        self.blocks += 1
        return frame("content_block_start", {"index": self.blocks - 1, "content_block": block})

    def block_delta(self, delta: dict[str, Any]) -> bytes:
        return frame("content_block_delta", {"index": self.blocks - 1, "delta": delta})

    def close(self) -> bytes:
        if self.open is None:
            return b""
        held = b""
        if self.open == "tool_use" and self.held:
            wrapped = tool_input(FinishedCall(self.open_call, "", "", "".join(self.held)))
            held = self.block_delta({"type": "input_json_delta", "partial_json": ENCODER.encode(wrapped).decode()})
        self.open, self.held = None, None
        return held + frame("content_block_stop", {"index": self.blocks - 1})

    def end(self, summary: Summary) -> list[bytes]:
        ending = self.ending
        assert ending.finish is not None
        delta = stop(ending.finish, ending.stop_sequence)
        return [frame("message_delta", {"delta": delta, "usage": usage_out(ending.usage)}), frame("message_stop", {})]

    def error(self, error: ApiError, request_id: str) -> bytes:
        return frame("error", {"error": error_detail(error)})


class Messages:
    """The dialect of ``POST /v1/messages``."""

    id_prefix = "msg_"
    keepalive = PING

    def stream(self, chat: ChatRequest, answer_id: str) -> MessagesEncoder:
        return MessagesEncoder(answer_id, chat.model)

    def whole(self, answer: AnswerBuilder, summary: Summary) -> bytes:
        assert answer.finish is not None
        content: list[dict[str, Any]] = []
        if answer.reasoning:
            content.append({"type": "thinking", "thinking": "".join(answer.reasoning), "signature": answer.signature})
        if answer.text:
            content.append({"type": "text", "text": "".join(answer.text)})
        for call in answer.tool_calls.finished():
            content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call)})
        message = {
            "id": summary.message_id,
            "type": "message",
            "role": "assistant",
            "model": summary.model,
            "content": content,
            **stop(answer.finish, answer.stop_sequence),
            "usage": usage_out(answer.usage),
        }
        return ENCODER.encode(message)

    def error_response(self, error: ApiError, request_id: str) -> Response:
        headers = {**error.headers, "request-id": request_id}
        return Response(error_body(error, request_id), error.status, headers, media_type="application/json")


MESSAGES = Messages()
