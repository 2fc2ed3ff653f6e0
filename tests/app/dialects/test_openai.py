from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.dialects.answer import AnswerBuilder
from app.dialects.base import Summary
from app.dialects.openai import CHAT_COMPLETIONS, DONE, ChunkEncoder
from app.errors import ApiError
from providers.base import Event, Finish, ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart, Usage
from providers.request import CHAT_REQUEST_DECODER


def encoder(include_usage: bool = False) -> ChunkEncoder:
    return ChunkEncoder("chatcmpl-1", 1700000000, 'model "quoted"', include_usage=include_usage)


def chunk(frame: bytes | None) -> dict[str, Any]:
    assert frame is not None
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    decoded: dict[str, Any] = orjson.loads(frame[6:])
    return decoded


@pytest.mark.parametrize(
    ("event", "delta"),
    [
        (TextDelta('he said "hi"\n\u2028'), {"content": 'he said "hi"\n\u2028'}),
        (ReasoningDelta("hmm"), {"reasoning_content": "hmm"}),
        (
            ToolCallStart(1, "call_9", "f"),
            {
                "tool_calls": [
                    {"index": 1, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            },
        ),
        (ToolCallDelta(1, '{"a":'), {"tool_calls": [{"index": 1, "function": {"arguments": '{"a":'}}]}),
    ],
)
def test_each_event_is_one_valid_chunk(event: Event, delta: dict[str, Any]) -> None:
    body = chunk(encoder().encode(event))
    assert body["id"] == "chatcmpl-1"
    assert body["object"] == "chat.completion.chunk"
    assert body["created"] == 1700000000
    assert body["model"] == 'model "quoted"'
    assert body["choices"] == [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]


def test_the_opening_chunk_carries_the_role() -> None:
    assert chunk(encoder().opening())["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_finish_sets_finished_and_the_reason() -> None:
    enc = encoder()
    assert not enc.finished
    assert chunk(enc.encode(Finish("length")))["choices"][0]["finish_reason"] == "length"
    assert enc.finished


def test_usage_is_held_for_the_end_and_sent_only_when_asked() -> None:
    asked, not_asked = encoder(include_usage=True), encoder()
    for enc in (asked, not_asked):
        assert enc.encode(Usage(7, 3, cached_tokens=2, reasoning_tokens=1)) is None
    assert not_asked.end() == [DONE]
    usage_frame, done = asked.end()
    body = chunk(usage_frame)
    assert body["choices"] == []
    assert body["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    assert done == DONE


def test_error_frame_is_the_envelope_without_done() -> None:
    frame = encoder().error(ApiError(502, "gone", code="upstream_error", type="upstream_error"), "rid")
    assert chunk(frame) == {
        "error": {
            "message": "gone",
            "type": "upstream_error",
            "code": "upstream_error",
            "param": None,
            "request_id": "rid",
        }
    }
    assert DONE not in frame


def test_the_dialect_makes_a_stream_encoder_for_the_request() -> None:
    chat = CHAT_REQUEST_DECODER.decode(
        b'{"model":"alias","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}'
    )
    encoder = CHAT_COMPLETIONS.stream(chat, "chatcmpl-9")
    encoder.encode(Usage(1, 1))
    usage_frame, done = encoder.end()
    assert chunk(usage_frame)["id"] == "chatcmpl-9"
    assert chunk(usage_frame)["model"] == "alias"
    assert chunk(usage_frame)["usage"]["total_tokens"] == 2
    assert done == DONE
    assert CHAT_COMPLETIONS.id_prefix == "chatcmpl-"


def test_the_whole_answer_is_a_chat_completion_named_after_the_summary() -> None:
    answer = AnswerBuilder()
    for event in (TextDelta("hi"), Usage(1, 1), Finish("stop")):
        answer.add(event)
    body = orjson.loads(CHAT_COMPLETIONS.whole(answer, Summary("chatcmpl-7", "alias", "p", None, 1.0)))
    assert (body["id"], body["model"], body["object"]) == ("chatcmpl-7", "alias", "chat.completion")
    assert body["choices"][0]["message"]["content"] == "hi"
