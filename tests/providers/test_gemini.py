from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
import respx

from providers._gemini_events import GeminiStream
from providers.base import (
    Deployment,
    Event,
    Finish,
    InvalidRequestError,
    ProviderError,
    RateLimitedError,
    ReasoningDelta,
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
from providers.gemini import GeminiProvider
from tests.providers.streams import assert_same_in_any_pieces, decode, fixture, run, streamed

BASE = "https://gemini.test/v1beta/models/gemini-2.5-flash"
FLASH = Deployment("gemini", "gemini-2.5-flash")
TEXT_EVENTS: list[Event] = [
    UpstreamModel("gemini-2.5-flash"),
    TextDelta("Okay, let's create"),
    TextDelta(" Tetris \u2028 éé"),
    TextDelta(", sound, high scores."),
    Usage(prompt_tokens=4, completion_tokens=5947 + 2042, cached_tokens=2, reasoning_tokens=2042),
    Finish("stop"),
]


def mapper() -> GeminiStream:
    return GeminiStream("gemini")


@pytest.fixture
async def provider() -> AsyncIterator[GeminiProvider]:
    async with httpx.AsyncClient() as client:
        yield GeminiProvider("gemini", client, base_url="https://gemini.test", api_key="AIza-test")


def test_crlf_text_in_any_pieces_with_text_in_the_finish_chunk() -> None:
    assert_same_in_any_pieces(mapper, fixture("gemini_text.sse"), TEXT_EVENTS)


def test_thoughts_and_whole_function_calls_get_ids_and_json_arguments() -> None:
    model, *events = run(mapper, [fixture("gemini_tool.sse")])
    assert model == UpstreamModel("gemini-2.5-flash")
    assert events[0] == ReasoningDelta("**Checking**")
    weather, time = events[1], events[3]
    assert isinstance(weather, ToolCallStart)
    assert isinstance(time, ToolCallStart)
    assert (weather.index, weather.name, time.index, time.name) == (0, "getWeather", 1, "getTime")
    assert weather.id.startswith("call_")
    assert weather.id != time.id
    assert events[2] == ToolCallDelta(0, '{"location":"Tokyo"}')
    assert events[4] == ToolCallDelta(1, "{}")
    assert events[5:] == [Usage(83, 14 + 104, reasoning_tokens=104), Finish("tool_calls")]


def test_an_error_object_inside_a_200_stream() -> None:
    with pytest.raises(UpstreamUnavailableError, match="overloaded"):
        run(mapper, [fixture("gemini_error.sse")])


def test_a_blocked_prompt_is_content_filter() -> None:
    assert run(mapper, [fixture("gemini_blocked.sse")]) == [Usage(8, 0), Finish("content_filter")]


def test_a_pretty_printed_error_body_instead_of_events() -> None:
    with pytest.raises(RateLimitedError, match="exceeded your current quota"):
        run(mapper, [fixture("gemini_error_json.txt")[:20], fixture("gemini_error_json.txt")[20:]])


def test_a_last_event_without_its_blank_line_is_dropped_so_the_stream_is_truncated() -> None:
    with pytest.raises(StreamTruncatedError, match="finishReason"):
        run(mapper, [fixture("gemini_text_truncated.sse")])


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("OTHER", "stop")],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    chunk = (
        b'data: {"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"' + reason.encode() + b'"}]}\r\n\r\n'
    )
    assert run(mapper, [chunk])[-1] == Finish(finish)  # type: ignore[arg-type]


def test_a_malformed_function_call_is_an_error() -> None:
    with pytest.raises(ProviderError, match="MALFORMED_FUNCTION_CALL"):
        run(mapper, [b'data: {"candidates":[{"finishReason":"MALFORMED_FUNCTION_CALL"}]}\n\n'])


def test_request_translation(provider: GeminiProvider) -> None:
    request = decode(
        b"""{"model":"g","stream":true,"max_tokens":100,"temperature":0.2,"stop":["END"],"seed":7,"reasoning_effort":"low",
        "tool_choice":"required","response_format":{"type":"json_object"},
        "tools":[{"type":"function","function":{"name":"getWeather","parameters":{"type":"object"}}}],
        "messages":[{"role":"system","content":"Be terse."},
        {"role":"user","content":[{"type":"text","text":"Tokyo?"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]},
        {"role":"assistant","content":"Checking.","tool_calls":[{"id":"call_a","type":"function","function":{"name":"getWeather","arguments":"{\\"location\\":\\"Tokyo\\"}"}},{"id":"call_b","type":"function","function":{"name":"getTime","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"call_a","content":"{\\"temp\\":18}"},{"role":"tool","tool_call_id":"call_b","content":"noon"}]}"""
    )
    http_request = provider.build_request(request, FLASH)
    assert str(http_request.url) == f"{BASE}:streamGenerateContent?alt=sse"
    assert http_request.headers["x-goog-api-key"] == "AIza-test"
    assert msgspec.json.decode(http_request.content) == {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "Tokyo?"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {
                        "functionCall": {"name": "getWeather", "args": {"location": "Tokyo"}},
                        "thoughtSignature": "skip_thought_signature_validator",
                    },
                    {
                        "functionCall": {"name": "getTime", "args": {}},
                        "thoughtSignature": "skip_thought_signature_validator",
                    },
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "getWeather", "response": {"temp": 18}}},
                    {"functionResponse": {"name": "getTime", "response": {"content": "noon"}}},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "tools": [{"functionDeclarations": [{"name": "getWeather", "parametersJsonSchema": {"type": "object"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.2,
            "stopSequences": ["END"],
            "seed": 7,
            "responseMimeType": "application/json",
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
        },
    }


def test_non_streaming_uses_generate_content(provider: GeminiProvider) -> None:
    request = decode(b'{"model":"g","messages":[{"role":"user","content":"x"}]}')
    assert str(provider.build_request(request, FLASH).url) == f"{BASE}:generateContent"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            b'{"model":"g","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}',
            "inline data",
        ),
        (b'{"model":"g","messages":[{"role":"tool","tool_call_id":"call_x","content":"r"}]}', "call_x"),
    ],
)
def test_what_gemini_cannot_take_is_a_clear_400(provider: GeminiProvider, body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        provider.build_request(decode(body), FLASH)


@respx.mock
async def test_stream_and_whole_answers_over_http(provider: GeminiProvider) -> None:
    respx.post(f"{BASE}:streamGenerateContent").mock(side_effect=streamed(fixture("gemini_text.sse"), size=13))
    whole = msgspec.json.encode(
        {
            "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        }
    )
    respx.post(f"{BASE}:generateContent").mock(side_effect=streamed(whole, size=10, content_type="application/json"))
    streamed_events = [
        e
        async for e in provider.stream(
            decode(b'{"model":"g","stream":true,"messages":[{"role":"user","content":"x"}]}'), FLASH
        )
    ]
    whole_events = [
        e async for e in provider.stream(decode(b'{"model":"g","messages":[{"role":"user","content":"x"}]}'), FLASH)
    ]
    assert streamed_events == [Start(), *TEXT_EVENTS]
    assert whole_events == [Start(), TextDelta("Hi"), Usage(3, 1), Finish("stop")]


@pytest.mark.parametrize(
    ("status", "body", "kind", "retry_after"),
    [
        (
            429,
            b'{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34.4s"}]}}',
            RateLimitedError,
            34.4,
        ),
        (
            400,
            b'{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}',
            UpstreamAuthError,
            None,
        ),
        (
            503,
            b'{\n  "error": {\n    "code": 503,\n    "message": "The model is overloaded.",\n    "status": "UNAVAILABLE"\n  }\n}\n',
            UpstreamUnavailableError,
            None,
        ),
    ],
)
@respx.mock
async def test_http_errors(
    provider: GeminiProvider, status: int, body: bytes, kind: type[ProviderError], retry_after: float | None
) -> None:
    respx.post(f"{BASE}:generateContent").mock(return_value=httpx.Response(status, content=body))
    with pytest.raises(kind) as info:
        await anext(provider.stream(decode(b'{"model":"g","messages":[{"role":"user","content":"x"}]}'), FLASH))
    assert info.value.retry_after == retry_after
    assert "API key not valid" not in info.value.message
