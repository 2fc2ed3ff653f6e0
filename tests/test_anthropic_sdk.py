"""``POST /v1/messages`` through the official anthropic SDK: every vendor faked at the HTTP layer, the
built-in models, every error mapping, and streaming and cancellation against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
import respx

from app.config import GatewayConfig, Reliability
from app.http.auth import AuthSettings, GatewayKey
from app.limits.rules import RateLimits
from app.main import create_app
from providers.catalog import ProviderSpec
from tests.conftest import LiveServer
from tests.fake_vendor import FakeVendor
from tests.providers.streams import fixture, streamed
from tests.test_reliability import CLOSE_WITHIN, scenario
from tests.test_vendors_sdk import CONFIG, OPENAI, SCENARIOS, Expected, mock_upstream

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


@pytest.fixture
async def sdk() -> AsyncIterator[anthropic.AsyncAnthropic]:
    app = create_app(CONFIG)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway.test")
    async with (
        http,
        anthropic.AsyncAnthropic(
            base_url="http://gateway.test", api_key="unused", http_client=http, max_retries=0
        ) as client,
    ):
        yield client


def seen(message: anthropic.types.Message) -> dict[str, Any]:
    """What a client reads of an answer, in the terms of ``Expected``."""
    kinds: dict[str, list[Any]] = {"text": [], "thinking": [], "tool_use": []}
    for block in message.content:
        match block:
            case anthropic.types.TextBlock(text=text):
                kinds["text"].append(text)
            case anthropic.types.ThinkingBlock(thinking=thinking):
                kinds["thinking"].append(thinking)
            case anthropic.types.ToolUseBlock(name=name, input=arguments, id=call_id):
                assert call_id
                kinds["tool_use"].append((name, arguments))
    usage = message.usage
    return {
        "text": "".join(kinds["text"]),
        "reasoning": "".join(kinds["thinking"]),
        "tools": kinds["tool_use"],
        "stop": message.stop_reason,
        "prompt": usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0),
        "completion": usage.output_tokens,
    }


def expected(wanted: Expected) -> dict[str, Any]:
    return {
        "text": wanted.text,
        "reasoning": wanted.reasoning,
        "tools": wanted.tools,
        "stop": STOP_REASONS[wanted.finish],
        "prompt": wanted.prompt_tokens,
        "completion": wanted.completion_tokens,
    }


@pytest.mark.parametrize("scenario_name", SCENARIOS)
@respx.mock
async def test_every_vendor_streams_to_the_sdk(sdk: anthropic.AsyncAnthropic, scenario_name: str) -> None:
    model, url, stream_fixture, whole_fixture, wanted = SCENARIOS[scenario_name]
    mock_upstream(url, stream_fixture, whole_fixture)
    async with sdk.messages.stream(model=model, max_tokens=1000, messages=MESSAGES) as stream:
        message = await stream.get_final_message()
    assert seen(message) == expected(wanted)


@pytest.mark.parametrize("scenario_name", SCENARIOS)
@respx.mock
async def test_every_vendor_answers_the_sdk_whole(sdk: anthropic.AsyncAnthropic, scenario_name: str) -> None:
    model, url, stream_fixture, whole_fixture, wanted = SCENARIOS[scenario_name]
    mock_upstream(url, stream_fixture, whole_fixture)
    message = await sdk.messages.create(model=model, max_tokens=1000, messages=MESSAGES)
    assert message.id.startswith("msg_")
    assert seen(message) == expected(wanted)


async def test_the_event_sequence_is_anthropic_s(sdk: anthropic.AsyncAnthropic) -> None:
    stream = await sdk.messages.create(model="echo", max_tokens=100, messages=MESSAGES, stream=True)
    types = [event.type async for event in stream]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@respx.mock
async def test_the_request_reaches_an_openai_upstream_translated(sdk: anthropic.AsyncAnthropic) -> None:
    route = respx.post(f"{OPENAI}/chat/completions").mock(
        side_effect=lambda request: httpx.Response(
            200, text="data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
        )
    )
    history: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"c": "Oslo"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    # The fake upstream's answer is empty; what matters here is the request it got.
    await sdk.messages.create(
        model="openai/gpt-4o",
        max_tokens=50,
        system="be brief",
        messages=history,
        tools=[{"name": "weather", "description": "the weather", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any"},
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},  # this SDK no longer takes sampling options as arguments
    )
    sent = httpx.Response(200, content=route.calls[0].request.content).json()
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "toolu_1", "function": {"name": "weather", "arguments": '{"c":"Oslo"}'}, "type": "function"}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"},
    ]
    assert (sent["tool_choice"], sent["stop"], sent["temperature"]) == ("required", ["END"], 0.5)
    assert sent["tools"][0]["function"]["parameters"] == {"type": "object"}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, anthropic.RateLimitError),
        (400, anthropic.BadRequestError),
        (404, anthropic.NotFoundError),
        (503, anthropic.InternalServerError),
        (500, anthropic.InternalServerError),
    ],
)
@respx.mock
async def test_upstream_errors_raise_the_sdk_s_own_exceptions(
    sdk: anthropic.AsyncAnthropic, status: int, error: type[anthropic.APIStatusError]
) -> None:
    respx.post(f"{OPENAI}/chat/completions").mock(
        return_value=httpx.Response(
            status, json={"error": {"message": "upstream says no"}}, headers={"retry-after": "2"}
        )
    )
    with pytest.raises(error) as info:
        await sdk.messages.create(model="openai/gpt-4o", max_tokens=10, messages=MESSAGES)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert "openai" in body["error"]["message"]
    assert info.value.response.headers["request-id"] == body["request_id"]
    if status == 429:
        assert info.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("body", "error", "kind"),
    [
        ({"model": "nope", "max_tokens": 5, "messages": MESSAGES}, anthropic.NotFoundError, "not_found_error"),
        ({"model": "echo", "messages": MESSAGES}, anthropic.BadRequestError, "invalid_request_error"),
        (
            {"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
    ],
)
async def test_client_mistakes_are_anthropic_errors(
    sdk: anthropic.AsyncAnthropic, body: dict[str, Any], error: type[anthropic.APIStatusError], kind: str
) -> None:
    with pytest.raises(error) as info:
        await sdk.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == kind
    assert info.value.body["error"]["message"]


async def read_to_the_end(sdk: anthropic.AsyncAnthropic, model: str) -> list[str]:
    async with sdk.messages.stream(model=model, max_tokens=10, messages=MESSAGES) as stream:
        return [event.type async for event in stream]


@respx.mock
async def test_a_failure_mid_stream_is_an_error_event(sdk: anthropic.AsyncAnthropic) -> None:
    respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(fixture("openai_error.sse")))
    with pytest.raises(anthropic.APIStatusError, match="openai"):
        await read_to_the_end(sdk, "openai/gpt-4o")


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


@pytest.fixture(scope="module")
def live(vendor: FakeVendor) -> Iterator[LiveServer]:
    config = GatewayConfig(
        reliability=Reliability(retries=0), providers={"openai": ProviderSpec("openai", vendor.url, "sk-fake")}
    )
    with LiveServer(create_app(config)) as server:
        yield server


async def test_a_live_stream_arrives_token_by_token(live: LiveServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=live.url, api_key="unused", max_retries=0) as client:
        arrivals = []
        async with client.messages.stream(
            model="synthetic:ttft_ms=20,delay_ms=50,tokens=4", max_tokens=10, messages=MESSAGES
        ) as stream:
            async for _ in stream.text_stream:
                arrivals.append(time.monotonic())
            message = await stream.get_final_message()
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] > 0.1  # not collected and sent at once
    assert message.stop_reason == "end_turn"


async def test_a_client_that_leaves_mid_stream_closes_the_upstream(live: LiveServer, vendor: FakeVendor) -> None:
    slow = scenario("ok", tokens=1000, delay_ms=20)
    async with anthropic.AsyncAnthropic(base_url=live.url, api_key="unused", max_retries=0) as client:
        async with client.messages.stream(model=f"openai/{slow}", max_tokens=10, messages=MESSAGES) as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    break
        left = time.monotonic()
    closed = await asyncio.to_thread(vendor.closed_at, slow)
    assert closed - left < CLOSE_WITHIN


async def test_the_sdk_lists_and_reads_models(sdk: anthropic.AsyncAnthropic) -> None:
    listed = [model.id async for model in sdk.models.list()]
    assert {"echo", "synthetic"} <= set(listed)
    assert (await sdk.models.retrieve("echo")).id == "echo"
    with pytest.raises(anthropic.NotFoundError):
        await sdk.models.retrieve("nope")


async def test_tokens_are_estimated_for_a_model_anthropic_does_not_serve(sdk: anthropic.AsyncAnthropic) -> None:
    short = await sdk.messages.with_raw_response.count_tokens(model="echo", messages=MESSAGES)
    long = await sdk.messages.count_tokens(model="echo", messages=[{"role": "user", "content": "word " * 400}])
    assert short.headers["x-gateway-token-count"] == "estimate"
    assert 0 < (await short.parse()).input_tokens < long.input_tokens
    assert 400 <= long.input_tokens <= 800  # about four characters a token


@respx.mock
async def test_anthropic_counts_its_own_models_tokens(sdk: anthropic.AsyncAnthropic) -> None:
    route = respx.post("https://anthropic.test/v1/messages/count_tokens").mock(
        return_value=httpx.Response(200, json={"input_tokens": 1234})
    )
    counted = await sdk.messages.with_raw_response.count_tokens(
        model="anthropic/claude-sonnet-4-5",
        messages=MESSAGES,
        system="be brief",
        extra_body={"context_management": {"edits": []}, "max_tokens": 9},
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
    )
    assert ((await counted.parse()).input_tokens, counted.headers["x-gateway-token-count"]) == (1234, "upstream")
    sent = route.calls[0].request
    assert httpx.Response(200, content=sent.content).json() == {
        "model": "claude-sonnet-4-5",
        "messages": MESSAGES,
        "system": "be brief",
        "context_management": {"edits": []},
    }
    assert sent.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert sent.headers["x-api-key"] == "sk-ant-secret"


@respx.mock
async def test_a_count_anthropic_refuses_is_the_sdk_s_error(sdk: anthropic.AsyncAnthropic) -> None:
    respx.post("https://anthropic.test/v1/messages/count_tokens").mock(
        return_value=httpx.Response(
            429, json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
        )
    )
    with pytest.raises(anthropic.RateLimitError):
        await sdk.messages.count_tokens(model="anthropic/claude-sonnet-4-5", messages=MESSAGES)


def keyed_sdk(key: str, **limits: int) -> anthropic.AsyncAnthropic:
    config = GatewayConfig(auth=AuthSettings(keys=[GatewayKey("alice", "gw-alice")], rate_limits=RateLimits(**limits)))
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(config)), base_url="http://gateway.test")
    return anthropic.AsyncAnthropic(base_url="http://gateway.test", api_key=key, http_client=http, max_retries=0)


@pytest.mark.parametrize("route", ["create", "count_tokens", "models"])
async def test_a_wrong_key_is_the_sdk_s_authentication_error(route: str) -> None:
    async with keyed_sdk("not-a-key") as client:
        if route == "create":
            call: Any = client.messages.create(model="echo", max_tokens=5, messages=MESSAGES)
        elif route == "count_tokens":
            call = client.messages.count_tokens(model="echo", messages=MESSAGES)
        else:
            call = client.models.list()
        with pytest.raises(anthropic.AuthenticationError) as info:
            await call
    body = info.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "authentication_error"
    assert "gateway key" in body["error"]["message"]
    assert "not-a-key" not in str(body)
    assert info.value.response.headers["request-id"] == body["request_id"]


async def test_a_key_over_its_limit_is_the_sdk_s_rate_limit_error() -> None:
    async with keyed_sdk("gw-alice", requests_per_minute=1) as client:
        await client.messages.create(model="echo", max_tokens=5, messages=MESSAGES)  # x-api-key carries it
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model="echo", max_tokens=5, messages=MESSAGES)
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "rate_limit_error"


async def test_a_stop_sequence_and_max_tokens_end_the_answer_as_anthropic_says(sdk: anthropic.AsyncAnthropic) -> None:
    asked: Any = [{"role": "user", "content": "one two END three"}]
    whole = await sdk.messages.create(model="echo", max_tokens=100, stop_sequences=["END"], messages=asked)
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", "END")
    assert whole.content[0].type == "text"
    assert whole.content[0].text == "one two"
    async with sdk.messages.stream(model="echo", max_tokens=100, stop_sequences=["END"], messages=asked) as stream:
        streamed_message = await stream.get_final_message()
    assert (streamed_message.stop_reason, streamed_message.stop_sequence) == ("stop_sequence", "END")
    cut = await sdk.messages.create(model="echo", max_tokens=2, messages=asked)
    assert (cut.stop_reason, cut.stop_sequence) == ("max_tokens", None)


@respx.mock
async def test_images_reach_an_openai_upstream_as_image_parts(sdk: anthropic.AsyncAnthropic) -> None:
    route = respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(fixture("openai_text.sse"), 7))
    content: Any = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
        {"type": "text", "text": "What is in these?"},
    ]
    async with sdk.messages.stream(
        model="openai/gpt-4o", max_tokens=50, messages=[{"role": "user", "content": content}]
    ) as stream:
        message = await stream.get_final_message()
    sent = httpx.Response(200, content=route.calls[0].request.content).json()
    assert sent["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
        {"type": "text", "text": "What is in these?"},
    ]
    assert message.stop_reason == "end_turn"
