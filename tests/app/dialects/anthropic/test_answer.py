"""Canonical events as Anthropic's event stream and message, and errors in Anthropic's envelope."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.dialects.answer import AnswerBuilder
from app.dialects.anthropic import MESSAGES, MessagesEncoder
from app.dialects.anthropic.answer import error_type
from app.dialects.base import Summary
from app.errors import ApiError
from providers.base import (
    Event,
    Finish,
    ReasoningDelta,
    ReasoningSignature,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamProtocolError,
    Usage,
)

SUMMARY = Summary("msg_1", "m", "p", 1.0, 2.0)


def events(frames: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Each ``event:``/``data:`` pair; the data's own type always names its event."""
    result = []
    for frame in frames.decode().split("\n\n"):
        if frame:
            name_line, data_line = frame.split("\n")
            name, data = name_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: "))
            assert data["type"] == name
            result.append((name, data))
    return result


def play(stream: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    encoder = MessagesEncoder("msg_1", "m")
    frames = [encoder.opening(), *(encoder.encode(e) or b"" for e in stream), *encoder.end(SUMMARY)]
    return events(b"".join(frames))


def test_blocks_open_and_close_as_the_kind_of_content_changes() -> None:
    played = play([ReasoningDelta("hm"), TextDelta("Hel"), TextDelta("lo"), Usage(10, 3, 4), Finish("stop")])
    assert [name for name, _ in played] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert played[1][1]["content_block"]["type"] == "thinking"
    assert played[2][1]["delta"] == {"type": "thinking_delta", "thinking": "hm"}
    assert played[4][1] == {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}
    assert played[8][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert played[8][1]["usage"] == {
        "input_tokens": 6,
        "output_tokens": 3,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 0,
    }


def input_deltas(played: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [
        data["delta"]["partial_json"] for _, data in played if data.get("delta", {}).get("type") == "input_json_delta"
    ]


def test_tool_calls_are_blocks_in_order_whose_input_streams_as_it_comes() -> None:
    played = play(
        [
            TextDelta("Checking."),
            ToolCallStart(0, "call_a", "weather"),
            ToolCallDelta(0, ""),
            ToolCallDelta(0, '{"city":'),
            ToolCallDelta(0, ' "Oslo"}'),
            ToolCallStart(1, "call_b", "time"),
            Finish("tool_calls"),
        ]
    )
    starts = [data["content_block"] for name, data in played if name == "content_block_start"]
    assert starts[1:] == [
        {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}},
        {"type": "tool_use", "id": "call_b", "name": "time", "input": {}},
    ]
    assert input_deltas(played) == ['{"city":', ' "Oslo"}']  # as they came; the call without any has none
    assert [(name, data.get("index")) for name, data in played[1:-2]] == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_stop", 2),
    ]
    assert played[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("fragments", "expected"),
    [(["not ", "json"], {"arguments": "not json"}), (["[1,", " 2]"], {"value": [1, 2]}), (["  ", " "], None)],
)
def test_arguments_that_are_not_an_object_are_held_and_sent_as_one(fragments: list[str], expected: Any) -> None:
    played = play([ToolCallStart(0, "c", "f"), *(ToolCallDelta(0, f) for f in fragments), Finish("tool_calls")])
    assert [orjson.loads(text) for text in input_deltas(played)] == ([expected] if expected else [{}])


def test_interleaved_parallel_calls_are_an_error_not_a_mix() -> None:
    encoder = MessagesEncoder("msg_1", "m")
    opened: list[Event] = [ToolCallStart(0, "a", "f"), ToolCallDelta(0, "{"), ToolCallStart(1, "b", "g")]
    for event in opened:
        encoder.encode(event)
    with pytest.raises(UpstreamProtocolError, match="interleaved"):
        encoder.encode(ToolCallDelta(0, "}"))


def test_a_signature_closes_its_thinking_block() -> None:
    played = play([ReasoningDelta("hm"), ReasoningSignature("sig=="), TextDelta("ok"), Finish("stop")])
    assert played[3][1] == {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "sig=="},
    }
    assert played[4][0] == "content_block_stop"


def test_an_error_in_the_stream_is_anthropic_s_error_event() -> None:
    frame = MessagesEncoder("msg_1", "m").error(ApiError(503, "the vendor is overloaded", code="x"), "req-1")
    assert events(frame) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "the vendor is overloaded"}})
    ]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (409, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
    ],
)
def test_statuses_map_to_anthropic_s_error_types(status: int, kind: str) -> None:
    assert error_type(status) == kind


def test_an_error_response_carries_the_request_id_and_retry_after() -> None:
    response = MESSAGES.error_response(
        ApiError(429, "slow down", code="rate_limited", headers={"Retry-After": "3"}), "req-7"
    )
    assert response.status_code == 429
    assert (response.headers["request-id"], response.headers["retry-after"]) == ("req-7", "3")
    assert orjson.loads(response.body) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
        "request_id": "req-7",
    }


def test_the_whole_message_has_its_blocks_stop_reason_and_usage() -> None:
    answer = AnswerBuilder()
    for event in (ReasoningDelta("hm"), TextDelta("Hi"), ToolCallStart(0, "c1", "f"), ToolCallDelta(0, '{"a":1}')):
        answer.add(event)
    answer.add(Usage(5, 2))
    answer.add(Finish("length"))
    message = orjson.loads(MESSAGES.whole(answer, SUMMARY))
    assert message["content"] == [
        {"type": "thinking", "thinking": "hm", "signature": ""},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
    ]
    assert (message["id"], message["type"], message["stop_reason"]) == ("msg_1", "message", "max_tokens")
    assert message["usage"]["input_tokens"] == 5


def test_a_stop_sequence_is_named_in_message_delta_and_the_message() -> None:
    played = play([TextDelta("a"), Finish("stop", "###")])
    assert played[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
    answer = AnswerBuilder()
    answer.add(TextDelta("a"))
    answer.add(Finish("stop", "###"))
    message = orjson.loads(MESSAGES.whole(answer, SUMMARY))
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "###")
