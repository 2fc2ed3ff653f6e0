"""The native dialect: named SSE events with ids, WebSocket frames, and the whole-answer body."""

from __future__ import annotations

from typing import Any

import orjson

from app.dialects.answer import AnswerBuilder
from app.dialects.base import Summary
from app.dialects.native import NATIVE_CHAT, NativeSocket, NativeSSEEncoder, WebSocketEncoder, socket_error
from app.errors import ApiError
from providers.base import Event, Finish, ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart, ToolRun, Usage
from providers.request import CHAT_REQUEST_DECODER

SUMMARY = Summary("msg_1", "m", "p", 12.5, 40.0)
CHAT = CHAT_REQUEST_DECODER.decode(b'{"model":"m","messages":[{"role":"user","content":"hi"}]}')


def sse(frame: bytes) -> tuple[str, str, Any]:
    lines = frame.decode().removesuffix("\n\n").split("\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return fields["id"], fields["event"], orjson.loads(fields["data"])


def test_each_event_is_named_and_numbered() -> None:
    encoder = NativeSSEEncoder()
    frames = [encoder.encode(TextDelta("a")), encoder.encode(ReasoningDelta("r")), encoder.encode(TextDelta("b"))]
    assert [sse(f) for f in frames if f] == [
        ("1", "token", {"content": "a"}),
        ("2", "reasoning", {"content": "r"}),
        ("3", "token", {"content": "b"}),
    ]


def test_tool_calls_are_held_until_complete_then_sent_before_complete() -> None:
    encoder = NativeSSEEncoder()
    events: list[Event] = [ToolCallStart(0, "c1", "f"), ToolCallDelta(0, '{"a":'), ToolCallDelta(0, "1}")]
    assert [encoder.encode(e) for e in events] == [None, None, None]
    encoder.encode(Usage(3, 4))
    assert encoder.encode(Finish("tool_calls")) is None
    assert encoder.finished
    assert encoder.finish == "tool_calls"
    assert encoder.usage == Usage(3, 4)
    closing = [sse(frame) for frame in encoder.end(SUMMARY)]
    assert closing[0][1:] == ("tool_call", {"index": 0, "id": "c1", "name": "f", "arguments": '{"a":1}'})
    name, complete = closing[1][1:]
    assert name == "complete"
    assert complete["usage"]["total_tokens"] == 7
    assert (complete["message_id"], complete["ttft_ms"], complete["finish_reason"]) == ("msg_1", 12.5, "tool_calls")


def test_a_tool_the_gateway_runs_is_shown_as_it_starts() -> None:
    encoder = NativeSSEEncoder()
    frame = encoder.encode(ToolRun("c1", "add", "{}", "tools"))
    assert frame is not None
    assert sse(frame)[1:] == ("tool_call", {"id": "c1", "name": "add", "arguments": "{}", "server": "tools"})


def test_an_error_event_carries_the_envelope_body() -> None:
    frame = NativeSSEEncoder().error(ApiError(502, "upstream broke", code="upstream_error"), "req-1")
    _, name, payload = sse(frame)
    assert name == "error"
    assert payload["error"] == {
        "message": "upstream broke",
        "type": "invalid_request_error",
        "code": "upstream_error",
        "param": None,
        "request_id": "req-1",
    }


def test_websocket_frames_name_their_type_and_request() -> None:
    encoder = WebSocketEncoder("chat-7")
    frame = encoder.encode(TextDelta("hi"))
    assert frame is not None
    assert orjson.loads(frame) == {"type": "token", "request_id": "chat-7", "content": "hi"}
    error = orjson.loads(encoder.error(ApiError(429, "slow down", code="rate_limited"), "ignored"))
    assert (error["type"], error["request_id"], error["error"]["request_id"]) == ("error", "chat-7", "chat-7")


def test_a_refused_frame_with_no_request_id_still_gets_an_error_frame() -> None:
    error = orjson.loads(socket_error(None, ApiError(400, "bad frame", code="invalid_json")))
    assert (error["type"], error["request_id"], error["error"]["request_id"]) == ("error", None, "")


def test_the_whole_answer_is_complete_plus_the_content() -> None:
    answer = AnswerBuilder()
    for event in (TextDelta("Hel"), ReasoningDelta("hmm"), TextDelta("lo"), Usage(1, 2), Finish("stop")):
        answer.add(event)
    body = orjson.loads(NATIVE_CHAT.whole(answer, SUMMARY))
    assert (body["content"], body["reasoning"], body["finish_reason"]) == ("Hello", "hmm", "stop")
    assert "tool_calls" not in body


def test_the_dialects_make_the_encoder_for_their_transport() -> None:
    assert type(NATIVE_CHAT.stream(CHAT, "msg_1")) is NativeSSEEncoder
    socket = NativeSocket("r1").stream(CHAT, "msg_1")
    assert type(socket) is WebSocketEncoder
    assert socket.request_id == "r1"
    assert NATIVE_CHAT.id_prefix == "msg_"
