from __future__ import annotations

import orjson

from app.dialects.answer import AnswerBuilder
from app.dialects.openai import completion_body
from providers.base import Event, Finish, Start, TextDelta, ToolCallDelta, ToolCallStart, ToolResult, ToolRun, Usage


def build(events: list[Event]) -> dict[str, object]:
    builder = AnswerBuilder()
    for event in events:
        builder.add(event)
    decoded: dict[str, object] = orjson.loads(completion_body(builder, "chatcmpl-x", 1, "m"))
    return decoded


def test_text_is_joined_and_usage_totalled() -> None:
    body = build([Start(), TextDelta("a"), TextDelta("b"), Usage(2, 2), Finish("stop")])
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ab", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["total_tokens"] == 4  # type: ignore[index]


def test_parallel_tool_calls_are_ordered_by_index_with_arguments_joined() -> None:
    body = build(
        [
            Start(),
            ToolCallStart(1, "c2", "second"),
            ToolCallStart(0, "c1", "first"),
            ToolCallDelta(1, '{"b":'),
            ToolCallDelta(0, "{}"),
            ToolCallDelta(1, "2}"),
            Finish("tool_calls"),
        ]
    )
    message = body["choices"][0]["message"]  # type: ignore[index]
    assert message["content"] is None
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]] == [
        ("c1", "first", "{}"),
        ("c2", "second", '{"b":2}'),
    ]


def test_an_empty_answer_is_an_empty_string_not_null() -> None:
    body = build([Start(), Finish("stop")])
    assert body["choices"][0]["message"]["content"] == ""  # type: ignore[index]


def test_tool_rounds_are_numbered_and_placed_where_the_text_stood() -> None:
    builder = AnswerBuilder()
    for event in (
        TextDelta("let me see"),
        ToolRun("c1", "add", "{}", "tools"),
        ToolRun("c2", "add", "{}", "tools"),
        ToolResult("c1", "add", "tools", "3", False, 1.0),
        ToolResult("c2", "add", "tools", "4", False, 1.0),
        TextDelta(" and"),
        ToolRun("c3", "add", "{}", "tools"),
    ):
        builder.add(event)
    assert [(round_, position, run.id) for round_, position, run in builder.tool_runs] == [
        (0, 1, "c1"),
        (0, 1, "c2"),
        (1, 2, "c3"),
    ]
    assert set(builder.tool_results) == {"c1", "c2"}
