from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
import respx

from providers.base import (
    Deployment,
    Event,
    Finish,
    InvalidRequestError,
    ModelNotFoundError,
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
    UpstreamProtocolError,
    UpstreamUnavailableError,
    Usage,
)
from providers.openai import ChatStream, OpenAIProvider
from providers.request import CHAT_REQUEST_DECODER, ChatRequest
from tests.providers.streams import assert_same_in_any_pieces, fixture, run, streamed

URL = "https://api.test/v1/chat/completions"
TEXT_EVENTS: list[Event] = [
    UpstreamModel("gpt-4o-2024-08-06"),  # from the first chunk only, though every chunk repeats it
    TextDelta("I'm"),
    TextDelta(" unable \u2028 été 🙂"),
    TextDelta("."),
    Usage(14, 30, cached_tokens=4),
    Finish("stop"),
]


def mapper() -> ChatStream:
    return ChatStream("openai")


def chat(body: bytes = b"") -> ChatRequest:
    return CHAT_REQUEST_DECODER.decode(b'{"model":"gpt","messages":[{"role":"user","content":"hi"}]' + body + b"}")


@pytest.fixture
async def provider() -> AsyncIterator[OpenAIProvider]:
    async with httpx.AsyncClient() as client:
        yield OpenAIProvider("openai", client, base_url="https://api.test/v1", api_key="sk-test-123")


def test_text_in_any_pieces() -> None:
    assert_same_in_any_pieces(mapper, fixture("openai_text.sse"), TEXT_EVENTS)


def test_parallel_tool_calls_keyed_by_an_index_that_starts_at_1_over_crlf() -> None:
    assert_same_in_any_pieces(
        mapper,
        fixture("openai_tools.sse"),
        [
            UpstreamModel("gpt-4o-2024-08-06"),
            ToolCallStart(0, "call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather"),
            ToolCallDelta(0, '{"city'),
            ToolCallDelta(0, '":"New York City"}'),
            ToolCallStart(1, "call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price"),
            ToolCallDelta(1, '{"ticker":"AAPL"}'),
            Usage(44, 16),
            Finish("tool_calls"),
        ],
    )


def test_reasoning_content_and_usage_in_the_finish_chunk() -> None:
    assert run(mapper, [fixture("openai_reasoning.sse")]) == [
        UpstreamModel("deepseek-reasoner"),
        ReasoningDelta("We"),
        ReasoningDelta(" think"),
        TextDelta("The"),
        Usage(18, 219, reasoning_tokens=205),
        Finish("stop"),
    ]


def test_an_error_object_mid_stream_raises_after_the_text_so_far() -> None:
    stream = mapper()
    with pytest.raises(ProviderError, match="server had an error") as info:
        stream.feed(fixture("openai_error.sse"))
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'data: {"object":"error","message":"bad","type":"BadRequestError","code":400}\n\n', InvalidRequestError),
        (b'data: {"error":{"code":"rate_limit_exceeded","message":"slow"}}\n\n', RateLimitedError),
        (b'data: {"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n', ProviderError),
        (b"data: {not json\n\n", UpstreamProtocolError),
    ],
)
def test_in_band_errors_of_compatible_servers(line: bytes, kind: type[ProviderError]) -> None:
    with pytest.raises(kind):
        mapper().feed(line)


def test_a_stream_that_said_its_finish_reason_and_ended_cleanly_is_complete_without_done() -> None:
    stream = mapper()
    events = stream.feed(fixture("openai_text_no_done.sse"))
    assert Finish("stop") not in events  # the finish waits for [DONE], or the end of the body
    assert stream.end()[-1] == Finish("stop")


def test_a_stream_that_ends_before_its_finish_reason_is_truncated() -> None:
    body = fixture("openai_text_no_done.sse")
    stream = mapper()
    stream.feed(body[: body.index(b'"finish_reason":"stop"')].rpartition(b"\n\n")[0] + b"\n\n")
    with pytest.raises(StreamTruncatedError, match="finish reason"):
        stream.end()


def test_request_is_the_client_dialect_with_usage_requested(provider: OpenAIProvider) -> None:
    request = chat(
        b',"max_tokens":9,"stop":["x"],"tools":[{"type":"function","function":{"name":"f"}}],"n":1,"metadata":{"a":"b"}'
    )
    http_request = provider.build_request(request, Deployment("openai", "gpt-4o"))
    assert http_request.url == URL
    assert http_request.headers["authorization"] == "Bearer sk-test-123"
    assert msgspec.json.decode(http_request.content) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 9,
        "stop": ["x"],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }


@respx.mock
async def test_stream_over_http_in_awkward_reads(provider: OpenAIProvider) -> None:
    route = respx.post(URL).mock(side_effect=streamed(fixture("openai_text.sse"), size=3))
    events = [event async for event in provider.stream(chat(), Deployment("openai", "gpt-4o"))]
    assert events == [Start(), *TEXT_EVENTS]
    assert route.calls.last.request.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "fragment"),
    [
        (
            400,
            b'{"error":{"message":"context too long","type":"invalid_request_error"}}',
            {},
            InvalidRequestError,
            "context too long",
        ),
        (
            401,
            b'{"error":{"message":"Incorrect API key provided: sk-VKMIs***wjh3"}}',
            {},
            UpstreamAuthError,
            "check the API key",
        ),
        (
            404,
            b'{"error":{"message":"The model `x` does not exist","code":"model_not_found"}}',
            {},
            ModelNotFoundError,
            "does not exist",
        ),
        (
            429,
            b'{"error":{"message":"Rate limit reached"}}',
            {"retry-after-ms": "2500"},
            RateLimitedError,
            "Rate limit",
        ),
        (503, b"<html>Service Unavailable</html>", {"retry-after": "7"}, UpstreamUnavailableError, "HTTP 503"),
        (500, b'{"error":{"message":"The server had an error"}}', {}, ProviderError, "server had an error"),
    ],
)
@respx.mock
async def test_http_errors_are_mapped(
    provider: OpenAIProvider,
    status: int,
    body: bytes,
    headers: dict[str, str],
    kind: type[ProviderError],
    fragment: str,
) -> None:
    respx.post(URL).mock(return_value=httpx.Response(status, content=body, headers=headers))
    with pytest.raises(kind, match=fragment) as info:
        await anext(provider.stream(chat(), Deployment("openai", "gpt-4o")))
    assert type(info.value) is kind
    assert "sk-VKMIs" not in info.value.message
    assert "openai" in info.value.message
    if status == 429:
        assert info.value.retry_after == 2.5
    if status == 503:
        assert info.value.retry_after == 7


@respx.mock
async def test_an_unreachable_upstream_is_unavailable(provider: OpenAIProvider) -> None:
    respx.post(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(UpstreamUnavailableError, match="could not reach openai"):
        await anext(provider.stream(chat(), Deployment("openai", "gpt-4o")))
