from __future__ import annotations

import re

import msgspec
import pytest

from providers.request import (
    CHAT_REQUEST_DECODER,
    AssistantMessage,
    ImagePart,
    ImageUrl,
    ResponseFormatJsonSchema,
    TextPart,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
    message_text,
)

MINIMAL = b'{"model":"echo","messages":[{"role":"user","content":"hi"}]'


def decode(extra: bytes = b"") -> object:
    return CHAT_REQUEST_DECODER.decode(MINIMAL + extra + b"}")


def test_minimal_request_has_openai_defaults() -> None:
    request = CHAT_REQUEST_DECODER.decode(MINIMAL + b"}")
    assert not request.stream
    assert request.include_usage is False
    assert request.token_limit is None
    assert request.messages == [UserMessage(content="hi")]


def test_unknown_fields_are_ignored() -> None:
    request = CHAT_REQUEST_DECODER.decode(MINIMAL + b',"presence_penalty":1,"store":true,"x":{"y":[1]}}')
    assert request.model == "echo"


def test_every_role_and_content_shape_decodes() -> None:
    body = b"""{"model":"m","messages":[
      {"role":"system","content":"s"},
      {"role":"developer","content":[{"type":"text","text":"d"}]},
      {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA","detail":"low"}}]},
      {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"c1","content":"18C"}]}"""
    request = CHAT_REQUEST_DECODER.decode(body)
    user, assistant, tool = request.messages[2], request.messages[3], request.messages[4]
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    assert user.content[1] == ImagePart(ImageUrl("data:image/png;base64,AA", "low"))
    assert isinstance(assistant, AssistantMessage)
    assert assistant.tool_calls is not None
    assert assistant.tool_calls[0].function.name == "f"
    assert tool == ToolMessage(content="18C", tool_call_id="c1")


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        (b',"stop":"END"', lambda r: r.stop == "END"),
        (b',"stop":["a","b"]', lambda r: r.stop == ["a", "b"]),
        (b',"tool_choice":"required"', lambda r: r.tool_choice == "required"),
        (
            b',"tool_choice":{"type":"function","function":{"name":"f"}}',
            lambda r: isinstance(r.tool_choice, ToolChoiceFunction),
        ),
        (
            b',"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}}',
            lambda r: isinstance(r.response_format, ResponseFormatJsonSchema),
        ),
        (b',"max_tokens":50,"max_completion_tokens":20', lambda r: r.token_limit == 20),
        (b',"stream":true,"stream_options":{"include_usage":true}', lambda r: r.include_usage),
        (b',"reasoning_effort":"high","seed":-5,"user":"u","metadata":{"k":"v"}', lambda r: r.seed == -5),
    ],
)
def test_optional_fields(extra: bytes, check: object) -> None:
    assert check(decode(extra))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        (b',"temperature":2.5', "$.temperature"),
        (b',"top_p":-0.1', "$.top_p"),
        (b',"max_tokens":0', "$.max_tokens"),
        (b',"stream":"yes"', "$.stream"),
        (b',"stop":5', "$.stop"),
        (b',"tool_choice":"sometimes"', "$.tool_choice"),
        (b',"reasoning_effort":"max"', "$.reasoning_effort"),
        (b',"tools":[{"type":"function","function":{"name":""}}]', "$.tools[0].function.name"),
    ],
)
def test_wrong_types_and_ranges_are_rejected_with_their_path(extra: bytes, where: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"at `{where}`")):
        decode(extra)


def test_message_text_joins_text_parts_and_skips_others() -> None:
    parts = [TextPart("a"), ImagePart(ImageUrl("https://example.com/a.png")), TextPart("b")]
    assert message_text(parts) == "ab"
    assert message_text(None) == ""
    assert message_text("s") == "s"


@pytest.mark.parametrize(("raw", "value"), [(b"5", 5), (b"5.0", 5), (b"2147483647", 2**31 - 1), (b"1e3", 1000)])
def test_token_counts_accept_whole_numbers_written_as_floats(raw: bytes, value: int) -> None:
    request = CHAT_REQUEST_DECODER.decode(MINIMAL + b',"max_tokens":' + raw + b"}")
    assert request.max_tokens == value
    assert type(request.token_limit) is not float


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"5.5", "fraction"),
        (b"0", "got 0"),
        (b"2147483648", "to 2147483647"),
        (b'"5"', "got `str`"),
        (b"true", "got `bool`"),
    ],
)
def test_token_counts_reject_what_is_not_a_whole_number_in_range(raw: bytes, fragment: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(fragment) + ".* - at `\\$.max_tokens`"):
        CHAT_REQUEST_DECODER.decode(MINIMAL + b',"max_tokens":' + raw + b"}")


@pytest.mark.parametrize(("raw", "value"), [(b"-9223372036854775808", -(2**63)), (b"3.0", 3), (b"0", 0)])
def test_seed_takes_the_int64_range(raw: bytes, value: int) -> None:
    assert CHAT_REQUEST_DECODER.decode(MINIMAL + b',"seed":' + raw + b"}").seed == value


def test_seed_past_int64_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape("- at `$.seed`")):
        CHAT_REQUEST_DECODER.decode(MINIMAL + b',"seed":9223372036854775808}')
