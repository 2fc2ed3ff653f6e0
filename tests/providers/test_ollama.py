from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
import respx

from providers.base import (
    Deployment,
    Finish,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ReasoningDelta,
    Start,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamModel,
    Usage,
)
from providers.catalog import ollama_url
from providers.ollama import OllamaProvider, OllamaStream
from tests.providers.streams import assert_same_in_any_pieces, decode, fixture, run, streamed

URL = "http://ollama.test:11434/api/chat"
LLAMA = Deployment("ollama", "llama3.2")


def mapper() -> OllamaStream:
    return OllamaStream("ollama")


@pytest.fixture
async def provider() -> AsyncIterator[OllamaProvider]:
    async with httpx.AsyncClient() as client:
        yield OllamaProvider("ollama", client, base_url="http://ollama.test:11434")


def test_thinking_text_and_usage_in_any_pieces() -> None:
    assert_same_in_any_pieces(
        mapper,
        fixture("ollama_text.ndjson"),
        [
            UpstreamModel("qwen3"),
            ReasoningDelta("Okay"),
            ReasoningDelta(", count."),
            TextDelta("The <sky>"),
            TextDelta(" is blue été."),
            Usage(26, 282),
            Finish("stop"),
        ],
    )


def test_whole_tool_calls_with_and_without_ids_and_no_final_newline() -> None:
    model, *events = run(mapper, [fixture("ollama_tool.ndjson")])
    assert model == UpstreamModel("llama3.2")
    assert events[0] == ToolCallStart(0, "call_k3m9x2qa", "get_weather")
    assert events[1] == ToolCallDelta(0, '{"city":"Tokyo"}')
    second = events[2]
    assert isinstance(second, ToolCallStart)
    assert second.name == "get_time"
    assert second.id.startswith("call_")
    assert events[3:] == [ToolCallDelta(1, "{}"), Usage(169, 15), Finish("tool_calls")]


def test_an_error_line_inside_a_200_stream() -> None:
    with pytest.raises(ProviderError, match="error was encountered while running the model"):
        run(mapper, [fixture("ollama_error.ndjson")])


def test_no_done_line_is_truncated() -> None:
    with pytest.raises(StreamTruncatedError, match="done line"):
        run(mapper, [fixture("ollama_text_truncated.ndjson")])


def test_done_without_a_reason_means_the_runner_closed_early() -> None:
    with pytest.raises(StreamTruncatedError):
        run(mapper, [b'{"message":{"content":"a"},"done":true,"done_reason":""}\n'])


def test_length_finish() -> None:
    assert run(mapper, [b'{"message":{"content":"a"},"done":true,"done_reason":"length","eval_count":1}\n'])[
        -1
    ] == Finish("length")


def test_request_translation(provider: OllamaProvider) -> None:
    request = decode(
        b"""{"model":"o","max_tokens":64,"temperature":0.7,"stop":"END","reasoning_effort":"high","response_format":{"type":"json_object"},
        "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
        "messages":[{"role":"system","content":"terse"},
        {"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0K"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Tokyo\\"}"}}]},
        {"role":"tool","tool_call_id":"call_1","content":"22C"}]}"""
    )
    http_request = provider.build_request(request, LLAMA)
    assert http_request.url == URL
    assert "authorization" not in http_request.headers
    assert msgspec.json.decode(http_request.content) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "terse"},
            {"role": "user", "content": "what is this?", "images": ["iVBORw0K"]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}],
            },
            {"role": "tool", "content": "22C", "tool_name": "get_weather", "tool_call_id": "call_1"},
        ],
        "stream": True,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "options": {"temperature": 0.7, "num_predict": 64, "stop": ["END"]},
        "think": "high",
        "format": "json",
    }


def test_an_image_url_is_a_clear_400(provider: OllamaProvider) -> None:
    request = decode(
        b'{"model":"o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}'
    )
    with pytest.raises(InvalidRequestError, match="inline data"):
        provider.build_request(request, LLAMA)


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({"OLLAMA_BASE_URL": "http://gpu-box:11434"}, "http://gpu-box:11434"),
        ({"OLLAMA_HOST": "0.0.0.0:11434"}, "http://127.0.0.1:11434"),
        ({"OLLAMA_HOST": "gpu-box"}, "http://gpu-box:11434"),
        ({"OLLAMA_HOST": "https://ollama.com"}, "https://ollama.com:443"),
        ({}, None),
    ],
)
def test_ollama_url_honours_ollama_host(environ: dict[str, str], url: str | None) -> None:
    assert ollama_url(environ) == url


@respx.mock
async def test_stream_over_http(provider: OllamaProvider) -> None:
    respx.post(URL).mock(
        side_effect=streamed(fixture("ollama_text.ndjson"), size=9, content_type="application/x-ndjson")
    )
    events = [
        e async for e in provider.stream(decode(b'{"model":"o","messages":[{"role":"user","content":"x"}]}'), LLAMA)
    ]
    assert events[0] == Start()
    assert events[-1] == Finish("stop")


@respx.mock
async def test_unknown_model_is_404(provider: OllamaProvider) -> None:
    respx.post(URL).mock(return_value=httpx.Response(404, json={"error": "model 'llama3.3' not found"}))
    with pytest.raises(ModelNotFoundError, match=r"llama3\.3"):
        await anext(provider.stream(decode(b'{"model":"o","messages":[{"role":"user","content":"x"}]}'), LLAMA))
