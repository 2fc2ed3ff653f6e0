from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from app.config import GatewayConfig, Reliability
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
from tests.conftest import LiveServer, asgi_client, make_app
from tests.fakes import ScriptedProvider

URL = "/api/v1/chat"
SCRIPT: list[Event | Exception] = [
    Start(),
    ReasoningDelta("hmm"),
    TextDelta("Hel"),
    TextDelta("lo"),
    ToolCallStart(0, "call_1", "get_weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Paris"}'),
    Usage(5, 7, cached_tokens=1, reasoning_tokens=2),
    Finish("tool_calls"),
]
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
NO_RETRIES = GatewayConfig(reliability=Reliability(retries=0))


def named_events(raw: str) -> list[tuple[str, str, Any]]:
    events = []
    for frame in filter(None, raw.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((fields["id"], fields["event"], orjson.loads(fields["data"])))
    return events


async def post(script: list[Event | Exception], accept: str | None, **body: Any) -> httpx.Response:
    headers = {"accept": accept} if accept else {}
    async with asgi_client(make_app([ScriptedProvider(script)], NO_RETRIES)) as client:
        return await client.post(URL, json={**BODY, **body}, headers=headers)


async def test_event_stream_has_every_event_type_with_ids() -> None:
    response = await post(SCRIPT, "text/event-stream")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = named_events(response.text)
    assert [e[0] for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert [(name, data) for _, name, data in events[:3]] == [
        ("reasoning", {"content": "hmm"}),
        ("token", {"content": "Hel"}),
        ("token", {"content": "lo"}),
    ]
    assert events[3][1:] == (
        "tool_call",
        {"index": 0, "id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
    )
    name, complete = events[4][1], events[4][2]
    assert name == "complete"
    assert complete["message_id"].startswith("msg_")
    assert complete["finish_reason"] == "tool_calls"
    assert complete["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "cached_tokens": 1,
        "reasoning_tokens": 2,
    }
    assert (complete["model"], complete["provider"]) == ("fake", "fake")
    assert complete["ttft_ms"] >= 0
    assert complete["duration_ms"] >= complete["ttft_ms"]


@pytest.mark.parametrize("accept", [None, "application/json", "*/*", "application/json; charset=utf-8, text/plain"])
async def test_without_event_stream_the_answer_is_one_json_body(accept: str | None) -> None:
    response = await post(SCRIPT, accept)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["content"], body["reasoning"], body["finish_reason"]) == ("Hello", "hmm", "tool_calls")
    assert body["tool_calls"] == [{"index": 0, "id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}]
    assert body["usage"]["total_tokens"] == 12


async def test_an_unsupported_accept_is_406() -> None:
    response = await post(SCRIPT, "text/html")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"


async def test_an_error_before_the_stream_keeps_its_status() -> None:
    response = await post([RateLimitedError("slow", retry_after=3)], "text/event-stream")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"


async def test_an_error_during_the_stream_is_an_error_event_and_no_complete() -> None:
    response = await post([Start(), TextDelta("a"), UpstreamUnavailableError("gone")], "text/event-stream")
    events = named_events(response.text)
    assert [name for _, name, _ in events] == ["token", "error"]
    assert events[-1][2]["error"]["code"] == "upstream_unavailable"


async def test_the_echo_model_through_the_native_api(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={**BODY, "model": "echo"}, headers={"accept": "text/event-stream"})
    events = named_events(response.text)
    assert [d["content"] for _, n, d in events if n == "token"] == ["hi"]
    assert events[-1][1] == "complete"


async def test_a_browser_style_client_reads_events_as_they_arrive(live_server: LiveServer) -> None:
    """Like fetch() with a stream reader: tokens arrive one by one, then complete."""
    body = {"model": "synthetic:ttft_ms=0,delay_ms=40,tokens=5", "messages": [{"role": "user", "content": "x"}]}
    seen: list[tuple[float, str]] = []
    buffer = ""
    headers = {"accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=live_server.url) as client,
        client.stream("POST", URL, json=body, headers=headers) as response,
    ):
        async for text in response.aiter_text():
            buffer += text
            *frames, buffer = buffer.split("\n\n")
            seen += [(time.perf_counter(), frame.split("\n")[1].removeprefix("event: ")) for frame in frames]
    names = [name for _, name in seen]
    assert names == ["token"] * 5 + ["complete"]
    assert seen[-1][0] - seen[0][0] > 0.1  # spread over time, not delivered at the end
