from __future__ import annotations

import pytest

from providers._translate import inline_image, json_object_or_wrapped, system_text, tool_arguments, tool_name_for, turns
from providers.base import InvalidRequestError
from providers.request import CHAT_REQUEST_DECODER, FunctionCall, ImagePart, ImageUrl, ToolCall

REQUEST = CHAT_REQUEST_DECODER.decode(
    b"""{"model":"m","messages":[{"role":"system","content":"a"},{"role":"user","content":"u"},
    {"role":"developer","content":[{"type":"text","text":"b"}]},{"role":"assistant","content":"x"}]}"""
)


def test_system_and_developer_text_is_joined_and_left_out_of_the_turns() -> None:
    assert system_text(REQUEST) == "a\n\nb"
    assert [type(m).__name__ for m in turns(REQUEST)] == ["UserMessage", "AssistantMessage"]


@pytest.mark.parametrize(("arguments", "value"), [('{"a":1}', {"a": 1}), ("", {}), ("  ", {}), ("[1]", [1])])
def test_tool_arguments(arguments: str, value: object) -> None:
    assert tool_arguments(ToolCall("c", FunctionCall("f", arguments))) == value


def test_invalid_tool_arguments_are_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        tool_arguments(ToolCall("c", FunctionCall("f", "{oops")))


def test_inline_image_reads_data_uris_with_parameters() -> None:
    part = ImagePart(ImageUrl("data:image/webp;name=a.webp;base64,UklGRg=="))
    assert inline_image(part, "X") == ("image/webp", "UklGRg==")


def test_a_missing_tool_call_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequestError, match="call_9"):
        tool_name_for({}, "call_9", "Gemini")


@pytest.mark.parametrize(
    ("text", "value"), [('{"t":18}', {"t": 18}), ("18C", {"content": "18C"}), ("[1]", {"content": [1]})]
)
def test_tool_results_become_objects(text: str, value: object) -> None:
    assert json_object_or_wrapped(text) == value
