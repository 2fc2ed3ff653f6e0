"""Anthropic's Messages request into the canonical request: each block, each option, each refusal."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from app.dialects.anthropic import MESSAGES_REQUEST_DECODER, chat_request
from app.dialects.anthropic import translate as translate_with_problem
from app.errors import ApiError
from providers.request import (
    AssistantMessage,
    ChatRequest,
    FileData,
    FilePart,
    ImagePart,
    ImageUrl,
    McpTools,
    SystemMessage,
    TextPart,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
)


def translate(**body: Any) -> ChatRequest:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **body}
    return chat_request(MESSAGES_REQUEST_DECODER.decode(orjson.dumps(body)))


def test_the_system_prompt_leads_and_blocks_are_joined() -> None:
    chat = translate(system=[{"type": "text", "text": "be"}, {"type": "text", "text": "brief"}])
    assert chat.messages[0] == SystemMessage("be\n\nbrief")
    assert chat.messages[1] == UserMessage("hi")
    assert chat.max_tokens == 10


def test_a_turn_s_tool_results_come_first_then_its_own_content() -> None:
    turn = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "4"}]},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": True},
        {"type": "text", "text": "and now?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
    ]
    messages = translate(messages=[{"role": "user", "content": turn}]).messages
    assert messages[:2] == [ToolMessage("4", "toolu_1"), ToolMessage("Error: no such file", "toolu_2")]
    user = messages[2]
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    assert user.content[0] == TextPart("and now?")
    assert [part.image_url.url for part in user.content[1:] if isinstance(part, ImagePart)] == [
        "data:image/png;base64,iVBOR",
        "https://x/y.png",
    ]


def test_an_assistant_turn_s_tool_uses_become_calls_and_thinking_is_dropped() -> None:
    turn = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}},
    ]
    (assistant,) = translate(messages=[{"role": "assistant", "content": turn}]).messages
    assert isinstance(assistant, AssistantMessage)
    assert assistant.content == "Let me look."
    assert assistant.tool_calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in assistant.tool_calls] == [
        ("toolu_1", "read", '{"path":"a"}')
    ]


def test_a_system_message_mid_conversation_stays_where_it_is() -> None:
    history = [
        {"role": "user", "content": "a"},
        {"role": "system", "content": [{"type": "text", "text": "remember"}]},
        {"role": "user", "content": "b"},
    ]
    assert translate(messages=history).messages == [UserMessage("a"), SystemMessage("remember"), UserMessage("b")]


def test_tools_and_the_options_map_to_their_canonical_names() -> None:
    chat = translate(
        tools=[
            {"name": "read", "description": "Read a file", "input_schema": {"type": "object"}},
            {"type": "mcp", "server": "files"},
        ],
        tool_choice={"type": "tool", "name": "read", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        temperature=0.3,
        top_p=0.9,
        metadata={"user_id": "u-1"},
        stream=True,
        conversation_id="conv_1",
    )
    function, mcp = chat.tools or []
    assert function.function.parameters == {"type": "object"}  # type: ignore[union-attr]
    assert mcp == McpTools("files")
    assert isinstance(chat.tool_choice, ToolChoiceFunction)
    assert chat.tool_choice.function.name == "read"
    assert (chat.parallel_tool_calls, chat.stop, chat.temperature, chat.top_p) == (False, ["END"], 0.3, 0.9)
    assert (chat.user, chat.stream, chat.conversation_id) == ("u-1", True, "conv_1")


@pytest.mark.parametrize(("choice", "expected"), [("auto", "auto"), ("any", "required"), ("none", "none")])
def test_tool_choice_modes(choice: str, expected: str) -> None:
    assert translate(tool_choice={"type": choice}).tool_choice == expected


@pytest.mark.parametrize(
    ("thinking", "output", "effort"),
    [
        (None, None, None),
        ({"type": "disabled"}, None, None),
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 8000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 32000}, None, "high"),
        ({"type": "adaptive"}, None, "medium"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        (None, {"effort": "low"}, "low"),
    ],
)
def test_thinking_becomes_a_reasoning_effort(
    thinking: dict[str, Any] | None, output: dict[str, Any] | None, effort: str | None
) -> None:
    assert translate(thinking=thinking, output_config=output).reasoning_effort == effort


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("messages", [{"role": "user", "content": [{"type": "document", "source": {}}]}], "document"),
        ("messages", [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n"}]}], "user turn"),
        (
            "messages",
            [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}],
            "assistant turn",
        ),
        ("tools", [{"type": "web_search_20250305", "name": "web_search"}], "server tool"),
        ("tools", [{"name": "no_schema"}], "input_schema"),
        ("tool_choice", {"type": "tool"}, "name"),
    ],
)
def test_what_cannot_be_passed_on_is_a_400_that_says_so(field: str, value: Any, says: str) -> None:
    with pytest.raises(ApiError, match=says) as refused:
        translate(**{field: value})
    assert refused.value.status == 400


def user_parts(*blocks: dict[str, Any]) -> Any:
    (user,) = translate(messages=[{"role": "user", "content": list(blocks)}]).messages
    assert isinstance(user, UserMessage)
    return user.content


def test_documents_become_text_or_files_for_any_model() -> None:
    parts = user_parts(
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The text."}, "title": "T"},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "Block."}]}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
            "title": "r",
        },
    )
    assert parts == [
        TextPart("T\n\nThe text."),
        TextPart("Block."),
        FilePart(FileData("data:application/pdf;base64,JVBE", filename="r")),
    ]


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ({"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}, "a `document` from a URL"),
        ({"type": "document", "source": {"type": "file", "file_id": "file_1"}}, "Files API"),
        ({"type": "image", "source": {"type": "file", "file_id": "file_1"}}, "Files API"),
        ({"type": "search_result", "source": "s", "title": "t", "content": []}, "'search_result'"),
    ],
)
def test_what_only_anthropic_takes_is_noted_not_raised(block: dict[str, Any], says: str) -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [block, {"type": "text", "text": "x"}]}],
    }
    chat, problem = translate_with_problem(MESSAGES_REQUEST_DECODER.decode(orjson.dumps(body)))
    assert problem is not None
    assert says in problem.message
    assert problem.status == 400
    assert chat.messages == [UserMessage([TextPart("x")])]  # the rest of the turn, for the access line and counts


def test_a_body_that_is_wrong_beside_an_unknown_block_is_still_refused() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "future"}]}]}  # no max_tokens
    with pytest.raises(msgspec.ValidationError, match="max_tokens"):
        MESSAGES_REQUEST_DECODER.decode(orjson.dumps(body))


def test_a_tool_result_s_images_follow_the_results_in_the_user_turn() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://x/shot.png"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "done"}, image]}
    messages = translate(messages=[{"role": "user", "content": [result, {"type": "text", "text": "and?"}]}]).messages
    assert messages[0] == ToolMessage("done", "toolu_1")
    assert messages[1] == UserMessage(
        [
            TextPart("(Attached to the result of tool call toolu_1:)"),
            ImagePart(ImageUrl("https://x/shot.png")),
            TextPart("and?"),
        ]
    )
