"""How an answer with tool rounds is kept: each round, its results, then the answer."""

from __future__ import annotations

import orjson

from app.conversations.answers import answer_messages
from app.dialects.answer import AnswerBuilder
from providers.base import Event, Finish, TextDelta, ToolResult, ToolRun, Usage


def built(*events: Event) -> AnswerBuilder:
    builder = AnswerBuilder()
    for event in events:
        builder.add(event)
    return builder


def run(call_id: str, name: str = "add") -> ToolRun:
    return ToolRun(call_id, name, "{}", "tools")


def result(call_id: str, content: str) -> ToolResult:
    return ToolResult(call_id, "add", "tools", content, False, 1.0)


def shapes(builder: AnswerBuilder, outcome: str = "complete") -> list[tuple[str, object, object]]:
    kept = answer_messages(builder, outcome, "m", None)  # type: ignore[arg-type]
    bodies = [orjson.loads(m.body) for m in kept]
    return [
        (b["role"], b.get("content"), [c["id"] for c in b.get("tool_calls") or []] or b.get("tool_call_id"))
        for b in bodies
    ]


def test_rounds_without_text_between_them_stay_separate_rounds() -> None:
    builder = built(
        TextDelta("Let me see. "),
        run("a"),
        result("a", "1"),
        run("b"),
        run("c"),
        result("b", "2"),
        result("c", "3"),
        TextDelta("Done."),
        Usage(3, 4),
        Finish("stop"),
    )
    assert shapes(builder) == [
        ("assistant", "Let me see. ", ["a"]),
        ("tool", "1", "a"),
        ("assistant", None, ["b", "c"]),
        ("tool", "2", "b"),
        ("tool", "3", "c"),
        ("assistant", "Done.", None),
    ]
    assert "".join(builder.text) == "Let me see. Done."  # the client's answer keeps all of the text


def test_a_call_cancelled_before_its_result_is_left_out() -> None:
    builder = built(TextDelta("Checking."), run("a"))
    assert shapes(builder, "cancelled") == [("assistant", "Checking.", None)]


def test_an_answer_without_tools_is_one_message() -> None:
    assert shapes(built(TextDelta("Hi."), Finish("stop"))) == [("assistant", "Hi.", None)]
