from __future__ import annotations

import httpx
import msgspec
import pytest
import respx

from providers._responses_events import ResponsesStream
from providers.base import (
    Deployment,
    Event,
    Finish,
    InvalidRequestError,
    ProviderError,
    ReasoningDelta,
    Start,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamUnavailableError,
    Usage,
)
from providers.openai_responses import OpenAIResponsesProvider
from providers.request import CHAT_REQUEST_DECODER
from tests.providers.streams import assert_same_in_any_pieces, fixture, run, streamed

CODEX = Deployment("openai", "gpt-5-codex", "responses")


def mapper() -> ResponsesStream:
    return ResponsesStream("openai")


def test_text_in_any_pieces() -> None:
    expected: list[Event] = [TextDelta("Why"), TextDelta(" did"), Usage(11, 18), Finish("stop")]
    assert_same_in_any_pieces(mapper, fixture("responses_text.sse"), expected)


def test_reasoning_then_calls_including_one_whose_arguments_come_only_in_done() -> None:
    assert run(mapper, [fixture("responses_tool.sse")]) == [
        ReasoningDelta("**Calcul"),
        ReasoningDelta("ating**"),
        ToolCallStart(0, "call_AB6AaRZ1FYZB2RwS6A5vbdqn", "calculator"),
        ToolCallDelta(0, '{"a":12,'),
        ToolCallDelta(0, '"b":7,"op":"add"}'),
        ToolCallStart(1, "call_second", "clock"),
        ToolCallDelta(1, "{}"),
        Usage(134, 28, reasoning_tokens=12),
        Finish("tool_calls"),
    ]


@pytest.mark.parametrize(
    ("name", "kind", "fragment"),
    [
        ("responses_error.sse", UpstreamUnavailableError, "overloaded"),
        ("responses_failed.sse", ProviderError, "failed to generate"),
    ],
)
def test_error_and_failed_events_raise(name: str, kind: type[ProviderError], fragment: str) -> None:
    with pytest.raises(kind, match=fragment):
        run(mapper, [fixture(name)])


def test_nested_error_shape_of_third_party_servers() -> None:
    data = b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","code":"rate_limit_exceeded","message":"slow"}}\n\n'
    with pytest.raises(ProviderError, match="slow") as info:
        mapper().feed(data)
    assert info.value.status == 429


def test_incomplete_for_max_output_tokens_is_length() -> None:
    events = run(mapper, [fixture("responses_incomplete.sse")])
    assert events[-2:] == [Usage(11, 2), Finish("length")]


def test_no_terminal_event_is_truncated() -> None:
    with pytest.raises(StreamTruncatedError, match="terminal event"):
        run(mapper, [fixture("responses_text_truncated.sse")])


def test_request_becomes_input_items_with_flat_tools() -> None:
    request = CHAT_REQUEST_DECODER.decode(
        b"""{"model":"codex","max_completion_tokens":50,"reasoning_effort":"high","tool_choice":{"type":"function","function":{"name":"calc"}},
        "tools":[{"type":"function","function":{"name":"calc","parameters":{"type":"object"}}}],
        "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"},"strict":true}},
        "messages":[{"role":"system","content":"terse"},{"role":"developer","content":"dev"},
        {"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
        {"role":"assistant","content":"ok","tool_calls":[{"id":"call_1","type":"function","function":{"name":"calc","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"call_1","content":"57"}]}"""
    )
    provider = OpenAIResponsesProvider("openai", httpx.AsyncClient(), base_url="https://api.test/v1")
    http_request = provider.build_request(request, CODEX)
    assert http_request.url == "https://api.test/v1/responses"
    assert msgspec.json.decode(http_request.content) == {
        "model": "gpt-5-codex",
        "input": [
            {"type": "message", "role": "system", "content": "terse"},
            {"type": "message", "role": "developer", "content": "dev"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "see"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                ],
            },
            {"type": "message", "role": "assistant", "content": "ok"},
            {"type": "function_call", "call_id": "call_1", "name": "calc", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "57"},
        ],
        "stream": True,
        "store": False,
        "tools": [{"type": "function", "name": "calc", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "calc"},
        "max_output_tokens": 50,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": True}},
    }


def test_stop_sequences_are_a_clear_400() -> None:
    request = CHAT_REQUEST_DECODER.decode(b'{"model":"m","messages":[{"role":"user","content":"x"}],"stop":"END"}')
    provider = OpenAIResponsesProvider("openai", httpx.AsyncClient())
    with pytest.raises(InvalidRequestError, match="no stop sequences"):
        provider.build_request(request, CODEX)


@respx.mock
async def test_stream_over_http() -> None:
    respx.post("https://api.test/v1/responses").mock(side_effect=streamed(fixture("responses_text.sse"), size=11))
    request = CHAT_REQUEST_DECODER.decode(b'{"model":"m","messages":[{"role":"user","content":"x"}]}')
    async with httpx.AsyncClient() as client:
        provider = OpenAIResponsesProvider("openai", client, base_url="https://api.test/v1", api_key="k")
        events = [event async for event in provider.stream(request, CODEX)]
    assert events == [Start(), TextDelta("Why"), TextDelta(" did"), Usage(11, 18), Finish("stop")]
