from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
import respx

from providers._anthropic_events import AnthropicStream
from providers.anthropic import AnthropicProvider
from providers.base import (
    Deployment,
    Finish,
    InvalidRequestError,
    ProviderError,
    RateLimitedError,
    ReasoningDelta,
    ReasoningSignature,
    Start,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamAuthError,
    UpstreamModel,
    UpstreamUnavailableError,
    Usage,
)
from tests.providers.streams import assert_same_in_any_pieces, decode, fixture, run, streamed

URL = "https://anthropic.test/v1/messages"
CLAUDE = Deployment("anthropic", "claude-sonnet-4-5")


def mapper() -> AnthropicStream:
    return AnthropicStream("anthropic")


@pytest.fixture
async def provider() -> AsyncIterator[AnthropicProvider]:
    async with httpx.AsyncClient() as client:
        yield AnthropicProvider("anthropic", client, base_url="https://anthropic.test", api_key="sk-ant-test")


def test_text_and_tools_with_pings_padding_and_a_call_without_arguments() -> None:
    assert_same_in_any_pieces(
        mapper,
        fixture("anthropic_tool.sse"),
        [
            UpstreamModel("claude-sonnet-4-20250514"),
            TextDelta("I"),
            TextDelta("'ll check the weather in Paris for you."),
            ToolCallStart(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather"),
            ToolCallDelta(0, '{"locati'),
            ToolCallDelta(0, 'on": "Paris"}'),
            ToolCallStart(1, "toolu_noargs", "get_time"),
            ToolCallDelta(1, "{}"),
            Usage(prompt_tokens=407, completion_tokens=65, cached_tokens=20),
            Finish("tool_calls"),
        ],
    )


def test_thinking_and_usage_restated_in_message_delta() -> None:
    assert run(mapper, [fixture("anthropic_thinking.sse")]) == [
        UpstreamModel("claude-sonnet-4-20250514"),
        ReasoningDelta("The user wants"),
        ReasoningSignature("Eu8BCkYICxgCKkBR=="),
        TextDelta("Hello"),
        Usage(prompt_tokens=61, completion_tokens=12),
        Finish("length"),
    ]


def test_error_event_after_content() -> None:
    with pytest.raises(UpstreamUnavailableError, match="Overloaded"):
        run(mapper, [fixture("anthropic_error.sse")])


def test_no_message_stop_is_truncated() -> None:
    with pytest.raises(StreamTruncatedError, match="message_stop"):
        run(mapper, [fixture("anthropic_truncated.sse")])


def test_request_translation(provider: AnthropicProvider) -> None:
    request = decode(
        b"""{"model":"c","stop":"END","temperature":0.5,"parallel_tool_calls":false,"user":"u-1",
        "tools":[{"type":"function","function":{"name":"get_weather","description":"w","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
        "messages":[{"role":"system","content":"Be terse."},{"role":"developer","content":[{"type":"text","text":"Use metric."}]},
        {"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"image_url","image_url":{"url":"https://x/y.jpg"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Paris\\"}"}},{"id":"toolu_2","type":"function","function":{"name":"get_weather","arguments":""}}]},
        {"role":"tool","tool_call_id":"toolu_1","content":"18C"},{"role":"tool","tool_call_id":"toolu_2","content":"20C"}]}"""
    )
    http_request = provider.build_request(request, CLAUDE)
    assert http_request.url == URL
    assert http_request.headers["x-api-key"] == "sk-ant-test"
    assert http_request.headers["anthropic-version"] == "2023-06-01"
    assert msgspec.json.decode(http_request.content) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "stream": True,
        "system": "Be terse.\n\nUse metric.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "20C"},
                ],
            },
        ],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "tools": [
            {
                "name": "get_weather",
                "description": "w",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
    }


@pytest.mark.parametrize(
    ("extra", "max_tokens", "thinking"),
    [
        (b',"reasoning_effort":"medium"', 8192 + 4096, {"type": "enabled", "budget_tokens": 8192}),
        (b',"reasoning_effort":"high","max_tokens":10000', 10000, {"type": "enabled", "budget_tokens": 5000}),
        (b',"reasoning_effort":"low","max_tokens":1500', 1500, None),
        (b',"reasoning_effort":"none","max_completion_tokens":77', 77, None),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(
    provider: AnthropicProvider, extra: bytes, max_tokens: int, thinking: dict[str, object] | None
) -> None:
    request = decode(b'{"model":"c","messages":[{"role":"user","content":"x"}]' + extra + b"}")
    body = msgspec.json.decode(provider.build_request(request, CLAUDE).content)
    assert body["max_tokens"] == max_tokens
    assert body.get("thinking") == thinking


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (b'"required"', {"type": "any"}),
        (b'"none"', {"type": "none"}),
        (b'{"type":"function","function":{"name":"f"}}', {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(provider: AnthropicProvider, choice: bytes, expected: dict[str, object]) -> None:
    request = decode(b'{"model":"c","messages":[{"role":"user","content":"x"}],"tool_choice":' + choice + b"}")
    assert msgspec.json.decode(provider.build_request(request, CLAUDE).content)["tool_choice"] == expected


def test_json_response_format_is_a_clear_400(provider: AnthropicProvider) -> None:
    request = decode(
        b'{"model":"c","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}'
    )
    with pytest.raises(InvalidRequestError, match="no JSON response format"):
        provider.build_request(request, CLAUDE)


@respx.mock
async def test_stream_over_http(provider: AnthropicProvider) -> None:
    respx.post(URL).mock(side_effect=streamed(fixture("anthropic_thinking.sse"), size=5))
    events = [
        e async for e in provider.stream(decode(b'{"model":"c","messages":[{"role":"user","content":"x"}]}'), CLAUDE)
    ]
    assert events[0] == Start()
    assert events[-1] == Finish("length")


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            529,
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
            UpstreamUnavailableError,
        ),
        (
            401,
            b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
            UpstreamAuthError,
        ),
        (
            429,
            b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded"}}',
            RateLimitedError,
        ),
        (500, b'{"type":"error","error":{"type":"api_error","message":"Internal server error"}}', ProviderError),
    ],
)
@respx.mock
async def test_http_errors(provider: AnthropicProvider, status: int, body: bytes, kind: type[ProviderError]) -> None:
    respx.post(URL).mock(return_value=httpx.Response(status, content=body, headers={"retry-after": "3"}))
    with pytest.raises(kind) as info:
        await anext(provider.stream(decode(b'{"model":"c","messages":[{"role":"user","content":"x"}]}'), CLAUDE))
    assert type(info.value) is kind
    if status in (529, 429):
        assert info.value.retry_after == 3


def test_the_stop_sequence_met_is_kept() -> None:
    events = fixture("anthropic_tool.sse").replace(
        b'"stop_reason":"tool_use","stop_sequence":null', b'"stop_reason":"stop_sequence","stop_sequence":"###"'
    )
    assert run(mapper, [events])[-1] == Finish("stop", "###")
