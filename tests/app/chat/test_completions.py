from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from app.config import GatewayConfig, Limits, Reliability
from providers.base import (
    Event,
    Finish,
    RateLimitedError,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamUnavailableError,
    Usage,
)
from tests.conftest import asgi_client, make_app
from tests.fakes import ScriptedProvider

URL = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello there"}]


def sse_data(body: str) -> list[Any]:
    """The decoded ``data:`` payloads of an SSE body, with ``[DONE]`` kept as a string."""
    frames = [frame for frame in body.split("\n\n") if frame]
    assert all(frame.startswith("data: ") for frame in frames), body
    return [f[6:] if f == "data: [DONE]" else orjson.loads(f[6:]) for f in frames]


NO_RETRIES = GatewayConfig(reliability=Reliability(retries=0))


async def post_to(provider: ScriptedProvider, **body: Any) -> httpx.Response:
    async with asgi_client(make_app([provider], NO_RETRIES)) as client:
        return await client.post(URL, json={"model": "fake", "messages": HELLO, **body})


async def test_non_streaming_answer_is_a_chat_completion(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"model": "echo", "messages": HELLO})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "echo"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["prompt_tokens"] == 2
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["total_tokens"] == 4


async def test_stream_sends_role_content_finish_usage_then_done(client: httpx.AsyncClient) -> None:
    body = {"model": "echo", "stream": True, "stream_options": {"include_usage": True}, "messages": HELLO}
    response = await client.post(URL, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    role, hello, there, finish, usage, done = sse_data(response.text)
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [hello["choices"][0]["delta"], there["choices"][0]["delta"]] == [{"content": "hello"}, {"content": " there"}]
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 2
    assert done == "[DONE]"
    assert len({chunk["id"] for chunk in (role, hello, finish, usage)}) == 1


async def test_stream_without_include_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"model": "echo", "stream": True, "messages": HELLO})
    chunks = sse_data(response.text)
    assert chunks[-1] == "[DONE]"
    assert all(chunk["choices"] for chunk in chunks[:-1])


async def test_reasoning_and_tool_calls_reach_both_dialects() -> None:
    script: list[Event | Exception] = [
        Start(),
        ReasoningDelta("think"),
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"SF"}'),
        Usage(10, 5, cached_tokens=3, reasoning_tokens=2),
        Finish("tool_calls"),
    ]
    whole = (await post_to(ScriptedProvider(script))).json()
    message = whole["choices"][0]["message"]
    assert message["content"] is None
    assert message["reasoning_content"] == "think"
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"SF"}'}}
    ]
    assert whole["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}
    assert whole["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}
    streamed = sse_data((await post_to(ScriptedProvider(script), stream=True)).text)
    deltas = [chunk["choices"][0]["delta"] for chunk in streamed[1:5]]
    assert deltas[0] == {"reasoning_content": "think"}
    assert deltas[1]["tool_calls"][0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:]] == ['{"city":', '"SF"}']
    assert streamed[5]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream", [True, False])
async def test_refusal_before_start_keeps_its_own_status(stream: bool) -> None:
    provider = ScriptedProvider([RateLimitedError("Slow down.", retry_after=2.4)])
    response = await post_to(provider, stream=stream)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "rate_limited"
    assert provider.closed_streams == 1


async def test_failure_mid_stream_ends_with_an_error_event_and_no_done() -> None:
    script: list[Event | Exception] = [
        Start(),
        TextDelta("partial"),
        UpstreamUnavailableError("The provider went away."),
    ]
    response = await post_to(ScriptedProvider(script), stream=True)
    assert response.status_code == 200
    *_, last = sse_data(response.text)
    assert last["error"]["code"] == "upstream_unavailable"
    assert last["error"]["request_id"] == response.headers["x-request-id"]
    assert "[DONE]" not in response.text
    assert 'finish_reason":"stop' not in response.text


@pytest.mark.parametrize("stream", [True, False])
async def test_a_stream_that_ends_without_finish_is_an_error(stream: bool) -> None:
    response = await post_to(ScriptedProvider([Start(), TextDelta("half an ans")]), stream=stream)
    if stream:
        assert sse_data(response.text)[-1]["error"]["code"] == "stream_truncated"
        assert "[DONE]" not in response.text
    else:
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "stream_truncated"


async def test_a_provider_that_yields_nothing_is_a_502() -> None:
    response = await post_to(ScriptedProvider([]), stream=True)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "stream_truncated"


async def test_a_bug_mid_stream_is_an_error_event_not_a_clean_end() -> None:
    response = await post_to(ScriptedProvider([Start(), TextDelta("a"), RuntimeError("boom")]), stream=True)
    last = sse_data(response.text)[-1]
    assert last["error"]["code"] == "internal_error"
    assert "boom" not in response.text


async def test_a_bug_before_start_is_a_500_in_the_envelope() -> None:
    response = await post_to(ScriptedProvider([RuntimeError("boom")]))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


async def test_unknown_model_is_404_model_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"model": "gpt-nonexistent", "messages": HELLO})
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert "GET /v1/models" in error["message"]


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"{", "invalid_json", None),
        (b"", "invalid_json", None),
        (b"[]", "invalid_type", None),
        (b'{"messages":[{"role":"user","content":"x"}]}', "missing_field", "model"),
        (b'{"model":"echo"}', "missing_field", "messages"),
        (b'{"model":"echo","messages":[{"content":"x"}]}', "missing_field", "messages[0].role"),
        (b'{"model":"echo","messages":[{"role":"user","content":5}]}', "invalid_type", "messages[0].content"),
        (b'{"model":"echo","messages":[{"role":"robot","content":"x"}]}', "invalid_value", "messages[0].role"),
        (b'{"model":"echo","messages":[]}', "invalid_value", "messages"),
        (
            b'{"model":"echo","messages":[{"role":"user","content":"x"}],"temperature":9}',
            "invalid_value",
            "temperature",
        ),
        (b'{"model":"echo","messages":[{"role":"user","content":"x"}],"n":2}', "unsupported_parameter", "n"),
        (b'{"model":"echo:speed=9","messages":[{"role":"user","content":"x"}]}', "invalid_request", "model"),
    ],
)
async def test_client_mistakes_are_400s_naming_the_field(
    client: httpx.AsyncClient, body: bytes, code: str, param: str | None
) -> None:
    response = await client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert error["type"] == "invalid_request_error"
    assert error["request_id"] == response.headers["x-request-id"]


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient) -> None:
    body = {"model": "echo", "messages": HELLO, "presence_penalty": 0.5, "logit_bias": {"1": 2}, "x-custom": [1]}
    assert (await client.post(URL, json=body)).status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_by_content_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post(URL, content=b'{"model":"echo"}', headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]["message"]


async def test_json_with_charset_is_accepted(client: httpx.AsyncClient) -> None:
    body = orjson.dumps({"model": "echo", "messages": HELLO})
    response = await client.post(URL, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed() -> None:
    app = make_app(config=GatewayConfig(limits=Limits(max_body_bytes=1024)))
    big = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "x" * 2000}]})

    async def chunks() -> Any:
        yield big[:1000]
        yield big[1000:]

    async with asgi_client(app) as client:
        declared = await client.post(URL, content=big, headers={"content-type": "application/json"})
        streamed = await client.post(URL, content=chunks(), headers={"content-type": "application/json"})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "1024 bytes" in response.json()["error"]["message"]


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.get(URL)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_a_json_body_with_a_utf8_bom_is_accepted(client: httpx.AsyncClient) -> None:
    body = b"\xef\xbb\xbf" + orjson.dumps({"model": "echo", "messages": HELLO})
    response = await client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200


async def test_a_huge_model_name_is_not_echoed_whole(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"model": "m" * 50_000, "messages": HELLO})
    assert response.status_code == 404
    assert len(response.text) < 1000
