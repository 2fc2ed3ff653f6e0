"""Messages client to Anthropic upstream: the body goes with only the model rewritten, the client's
anthropic-beta and -version headers with it, and the events come back byte for byte, yet still read
for usage, deadlines and honest endings. And what only Anthropic takes goes only to Anthropic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import orjson
import pytest
import respx

from app.config import GatewayConfig, HttpSettings, Reliability
from app.main import create_app
from providers.base import Deployment
from providers.catalog import ProviderSpec
from providers.router import ModelConfig
from tests.conftest import LiveServer
from tests.fake_vendor import FakeVendor
from tests.providers.streams import AWKWARD_SIZES, fixture, streamed
from tests.test_reliability import CLOSE_WITHIN, scenario

ANTHROPIC = "https://anthropic.test/v1/messages"
OPENAI = "https://openai.test/v1/chat/completions"
CONFIG = GatewayConfig(
    http=HttpSettings(transport="httpx"),
    reliability=Reliability(retries=1),
    providers={
        "anthropic": ProviderSpec("anthropic", "https://anthropic.test", "sk-ant-secret"),
        "openai": ProviderSpec("openai", "https://openai.test/v1", "sk-openai-secret"),
    },
    models={
        "claude": ModelConfig("anthropic", "claude-sonnet-4-5"),
        "claude-then-gpt": ModelConfig(
            deployments=[Deployment("anthropic", "claude-sonnet-4-5"), Deployment("openai", "gpt-4o")]
        ),
        "gpt-then-claude": ModelConfig(
            deployments=[Deployment("openai", "gpt-4o"), Deployment("anthropic", "claude-sonnet-4-5")]
        ),
    },
)
# What Claude Code sends and the gateway does not know: each must reach Anthropic as it was written.
UNKNOWN_FIELDS: dict[str, Any] = {
    "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    "container": "container_1",
    "mcp_servers": [{"type": "url", "url": "https://mcp.test", "name": "docs"}],
    "output_config": {"effort": "high", "future": 1},
    "future_field": {"nested": [1, 2.5, "x"]},
}
BETA = "context-management-2025-06-27,prompt-caching-scope-2026-01-05"


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(CONFIG)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway.test") as client:
        yield client


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}


def whole(payload: bytes, size: int = 9) -> Any:
    return streamed(payload, size, "application/json")


async def post(http: httpx2.AsyncClient, payload: dict[str, Any], **headers: str) -> httpx2.Response:
    # Bytes, not json=: the order and spelling of the client's fields are part of what is checked.
    return await http.post(
        "/v1/messages",
        content=orjson.dumps(payload),
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01", **headers},
    )


@respx.mock
async def test_the_body_goes_upstream_with_only_the_model_rewritten(http: httpx2.AsyncClient) -> None:
    route = respx.post(ANTHROPIC).mock(side_effect=streamed(fixture("anthropic_tool.sse"), 7))
    sent = body(stream=True, **UNKNOWN_FIELDS)
    response = await post(http, sent, **{"anthropic-beta": BETA})
    assert response.status_code == 200
    upstream = route.calls[0].request
    assert upstream.content == orjson.dumps(sent | {"model": "claude-sonnet-4-5"})
    assert upstream.headers["anthropic-beta"] == BETA
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.headers["x-api-key"] == "sk-ant-secret"


@pytest.mark.parametrize("size", AWKWARD_SIZES)
@respx.mock
async def test_the_events_reach_the_client_byte_for_byte(http: httpx2.AsyncClient, size: int) -> None:
    events = fixture("anthropic_tool.sse")
    respx.post(ANTHROPIC).mock(side_effect=streamed(events, size))
    response = await post(http, body(stream=True))
    assert response.content == events
    assert response.headers["x-gateway-deployment"] == "anthropic/claude-sonnet-4-5"


@respx.mock
async def test_a_whole_answer_is_the_upstream_s_own_body(http: httpx2.AsyncClient) -> None:
    answer = fixture("anthropic_tool.json")
    route = respx.post(ANTHROPIC).mock(side_effect=whole(answer))
    response = await post(http, body())
    assert response.status_code == 200
    assert response.content == answer
    assert route.calls[0].request.headers["accept"] == "application/json"
    assert "stream" not in orjson.loads(route.calls[0].request.content)


@respx.mock
async def test_usage_and_cached_tokens_are_read_on_the_way(
    http: httpx2.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    respx.post(ANTHROPIC).mock(side_effect=streamed(fixture("anthropic_tool.sse"), 5))
    await post(http, body(stream=True))
    line = next(orjson.loads(x) for x in capsys.readouterr().out.splitlines() if '"path":"/v1/messages"' in x)
    assert (line["prompt_tokens"], line["cached_tokens"], line["completion_tokens"]) == (407, 20, 65)
    assert line["finish_reason"] == "tool_calls"
    assert line["ttft_ms"] is not None


@respx.mock
async def test_a_stream_cut_short_ends_in_an_error_event_and_never_half_an_event(http: httpx2.AsyncClient) -> None:
    events = fixture("anthropic_tool.sse")
    cut = events.index(b"event: message_delta") + 30  # inside the message_delta event
    respx.post(ANTHROPIC).mock(side_effect=streamed(events[:cut], 11))
    response = await post(http, body(stream=True, model="anthropic/claude-sonnet-4-5"))
    relayed, _, error = response.content.rpartition(b"event: error\n")
    assert relayed == events[: events.index(b"event: message_delta")]
    assert b"event: message_stop" not in response.content
    assert orjson.loads(error.removeprefix(b"data: "))["error"]["type"] == "api_error"


@respx.mock
async def test_a_retry_after_the_opening_sends_the_opening_once(http: httpx2.AsyncClient) -> None:
    events = fixture("anthropic_tool.sse")
    opening = events[: events.index(b"event: content_block_start")]
    answers = iter([streamed(opening, 50), streamed(events, 50)])
    respx.post(ANTHROPIC).mock(side_effect=lambda request: next(answers)(request))
    response = await post(http, body(stream=True))
    assert response.content == events  # the second attempt's message_start is left out


@respx.mock
async def test_a_translated_fallback_after_a_relayed_opening_sends_no_second_opening(http: httpx2.AsyncClient) -> None:
    events = fixture("anthropic_tool.sse")
    opening = events[: events.index(b"event: content_block_start")]
    respx.post(ANTHROPIC).mock(side_effect=streamed(opening, 50))
    respx.post(OPENAI).mock(side_effect=streamed(fixture("openai_text.sse"), 7))
    response = await post(http, body(stream=True, model="claude-then-gpt"))
    assert response.content.startswith(opening)
    assert response.content.count(b"event: message_start") == 1
    assert response.content.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


@respx.mock
async def test_a_relayed_fallback_after_a_translated_opening_sends_no_second_opening(http: httpx2.AsyncClient) -> None:
    respx.post(OPENAI).mock(side_effect=streamed(b'data: {"choices":[]}\n\n', 50))  # opens, then ends cut short
    respx.post(ANTHROPIC).mock(side_effect=streamed(fixture("anthropic_tool.sse"), 7))
    response = await post(http, body(stream=True, model="gpt-then-claude"))
    assert response.content.count(b"event: message_start") == 1
    assert b'"id":"toolu_01NRLabsLyVHZPKxbKvkfSMn"' in response.content
    assert response.content.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


DOCUMENT_URL = {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}
SEARCH_RESULT = {"type": "search_result", "source": "https://x.test", "title": "t", "content": []}


@pytest.mark.parametrize("block", [DOCUMENT_URL, SEARCH_RESULT], ids=["document_url", "unknown_block"])
@respx.mock
async def test_what_only_anthropic_takes_goes_to_anthropic(http: httpx2.AsyncClient, block: dict[str, Any]) -> None:
    route = respx.post(ANTHROPIC).mock(side_effect=streamed(fixture("anthropic_tool.sse"), 7))
    sent = body(stream=True, messages=[{"role": "user", "content": [block, {"type": "text", "text": "read"}]}])
    response = await post(http, sent)
    assert response.status_code == 200
    assert orjson.loads(route.calls[0].request.content)["messages"] == sent["messages"]


@respx.mock
async def test_what_only_anthropic_takes_skips_the_other_deployments(http: httpx2.AsyncClient) -> None:
    respx.post(ANTHROPIC).mock(return_value=httpx.Response(529, json={"error": {"message": "overloaded"}}))
    openai_route = respx.post(OPENAI).mock(side_effect=streamed(fixture("openai_text.sse"), 7))
    sent = body(model="claude-then-gpt", messages=[{"role": "user", "content": [DOCUMENT_URL]}])
    response = await post(http, sent)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "overloaded_error"
    assert not openai_route.called


async def test_what_only_anthropic_takes_is_a_400_for_another_model(http: httpx2.AsyncClient) -> None:
    sent = body(model="openai/gpt-4o", messages=[{"role": "user", "content": [DOCUMENT_URL]}])
    response = await post(http, sent)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "a `document` from a URL" in error["message"]


@respx.mock
async def test_an_upstream_error_keeps_the_anthropic_envelope(http: httpx2.AsyncClient) -> None:
    respx.post(ANTHROPIC).mock(
        return_value=httpx.Response(400, json={"type": "error", "error": {"message": "prompt is too long"}})
    )
    response = await post(http, body(stream=True))
    assert response.status_code == 400
    assert "prompt is too long" in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


@pytest.fixture(scope="module")
def live(vendor: FakeVendor) -> Iterator[LiveServer]:
    base = vendor.url.removesuffix("/v1")
    config = GatewayConfig(
        reliability=Reliability(retries=0), providers={"anthropic": ProviderSpec("anthropic", base, "sk-ant-fake")}
    )
    with LiveServer(create_app(config)) as server:
        yield server


async def test_a_live_relay_arrives_event_by_event(live: LiveServer, vendor: FakeVendor) -> None:
    model = scenario("ok", tokens=4, delay_ms=100)
    body = {
        "model": f"anthropic/{model}",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    arrivals, received = [], b""
    async with httpx.AsyncClient(base_url=live.url) as client:
        headers = {"anthropic-beta": "fake-beta-1", "anthropic-version": "2023-06-01"}
        async with client.stream("POST", "/v1/messages", json=body, headers=headers) as response:
            async for chunk in response.aiter_raw():
                arrivals += [time.monotonic()] * chunk.count(b'"text_delta"')
                received += chunk
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] > 0.2  # 300 ms apart upstream: relayed as they came, not gathered
    assert b'"id":"msg_fake"' in received  # the upstream's own message
    assert b'"cache_read_input_tokens":7' in received
    assert received.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert b"anthropic-beta: fake-beta-1" in vendor.heads[model][0]


async def test_a_client_that_leaves_a_relay_closes_the_upstream(live: LiveServer, vendor: FakeVendor) -> None:
    slow = scenario("ok", tokens=1000, delay_ms=20)
    async with anthropic.AsyncAnthropic(base_url=live.url, api_key="unused", max_retries=0) as client:
        async with client.messages.stream(
            model=f"anthropic/{slow}", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    break
        left = time.monotonic()
    closed = await asyncio.to_thread(vendor.closed_at, slow)
    assert closed - left < CLOSE_WITHIN


async def test_a_live_relay_cut_short_is_an_error_for_the_sdk(live: LiveServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=live.url, api_key="unused", max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError, match="message_stop"):
            async with client.messages.stream(
                model=f"anthropic/{scenario('truncate', tokens=2)}",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
            ) as stream:
                await stream.get_final_message()


@respx.mock
async def test_thinking_and_its_signature_reach_the_sdk(http: httpx2.AsyncClient) -> None:
    respx.post(ANTHROPIC).mock(side_effect=streamed(fixture("anthropic_thinking.sse"), 3))
    client = anthropic.AsyncAnthropic(base_url="http://gateway.test", api_key="unused", http_client=http)
    async with client.messages.stream(
        model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        message = await s.get_final_message()
    thinking = message.content[0]
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == ("The user wants", "Eu8BCkYICxgCKkBR==")


async def test_a_client_that_leaves_a_whole_answer_closes_the_upstream(live: LiveServer, vendor: FakeVendor) -> None:
    slow = scenario("ok", tokens=1000, delay_ms=20)
    body = {"model": f"anthropic/{slow}", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=live.url) as client:
        request = asyncio.ensure_future(client.post("/v1/messages", json=body))
        await asyncio.to_thread(vendor.wait_for_request, slow)
        await asyncio.sleep(0.2)  # the upstream is answering; the client gives up waiting
        request.cancel()
        left = time.monotonic()
    closed = await asyncio.to_thread(vendor.closed_at, slow)
    assert closed - left < CLOSE_WITHIN
