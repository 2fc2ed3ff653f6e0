"""Every vendor, faked at the HTTP layer, seen through the official openai SDK pointed at the gateway.

The SDK must get exactly the text, reasoning, tool calls, finish reason and usage the vendor sent,
streaming and not, and every vendor failure as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import httpx2
import msgspec
import openai
import pytest
import respx
from starlette.applications import Starlette

from app.config import GatewayConfig, HttpSettings
from app.main import create_app
from providers.base import Deployment
from providers.catalog import ProviderSpec
from providers.router import ModelConfig
from tests.app.http.test_access import access_lines
from tests.providers.streams import fixture, streamed

OPENAI = "https://openai.test/v1"
CONFIG = GatewayConfig(
    http=HttpSettings(transport="httpx"),  # respx fakes httpx's own transport; aiohttp's is tested live
    providers={
        "openai": ProviderSpec("openai", OPENAI, "sk-openai-secret"),
        "anthropic": ProviderSpec("anthropic", "https://anthropic.test", "sk-ant-secret"),
        "gemini": ProviderSpec("gemini", "https://gemini.test", "AIza-secret"),
        "ollama": ProviderSpec("ollama", "http://ollama.test:11434"),
        "groq": ProviderSpec("openai", "https://groq.test/openai/v1", "gsk-secret"),
    },
    models={"codex": ModelConfig("openai", "gpt-5-codex", "responses")},
)


class Expected(msgspec.Struct):
    text: str = ""
    reasoning: str = ""
    tools: list[tuple[str, Any]] = []
    finish: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


# model, upstream URL, fixture for streams, fixture for whole answers (Gemini has its own endpoint), expected
SCENARIOS: dict[str, tuple[str, str, str, str | None, Expected]] = {
    "openai-tools": (
        "openai/gpt-4o",
        f"{OPENAI}/chat/completions",
        "openai_tools.sse",
        None,
        Expected(
            tools=[("get_weather", {"city": "New York City"}), ("get_stock_price", {"ticker": "AAPL"})],
            finish="tool_calls",
            prompt_tokens=44,
            completion_tokens=16,
        ),
    ),
    "openai-compatible-reasoning": (
        "groq/deepseek-reasoner",
        "https://groq.test/openai/v1/chat/completions",
        "openai_reasoning.sse",
        None,
        Expected(text="The", reasoning="We think", prompt_tokens=18, completion_tokens=219),
    ),
    "openai-responses": (
        "codex",
        f"{OPENAI}/responses",
        "responses_tool_full.sse",
        "responses_tool.json",
        Expected(
            reasoning="**Calculating**",
            tools=[("calculator", {"a": 12, "b": 7, "op": "add"}), ("clock", {})],
            finish="tool_calls",
            prompt_tokens=134,
            completion_tokens=28,
        ),
    ),
    "anthropic": (
        "anthropic/claude-sonnet-4-5",
        "https://anthropic.test/v1/messages",
        "anthropic_tool.sse",
        "anthropic_tool.json",
        Expected(
            text="I'll check the weather in Paris for you.",
            tools=[("get_weather", {"location": "Paris"}), ("get_time", {})],
            finish="tool_calls",
            prompt_tokens=407,
            completion_tokens=65,
        ),
    ),
    "gemini": (
        "gemini/gemini-2.5-flash",
        "https://gemini.test/v1beta/models/gemini-2.5-flash",
        "gemini_tool.sse",
        "gemini_tool.json",
        Expected(
            reasoning="**Checking**",
            tools=[("getWeather", {"location": "Tokyo"}), ("getTime", {})],
            finish="tool_calls",
            prompt_tokens=83,
            completion_tokens=118,
        ),
    ),
    "ollama": (
        "ollama/qwen3",
        "http://ollama.test:11434/api/chat",
        "ollama_text.ndjson",
        None,
        Expected(text="The <sky> is blue été.", reasoning="Okay, count.", prompt_tokens=26, completion_tokens=282),
    ),
}
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


def sdk_http(app: Starlette) -> httpx2.AsyncClient:
    """The SDK's own HTTP library, calling the app in-process; respx fakes only the gateway's upstreams."""
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway.test")


def mock_upstream(url: str, stream_fixture: str, whole_fixture: str | None) -> None:
    if whole_fixture is None:
        respx.post(url).mock(side_effect=streamed(fixture(stream_fixture), size=7))
        return
    if url.endswith(("/v1/messages", "/responses")):  # Anthropic and Responses stream or not as asked, on one URL
        stream, whole = streamed(fixture(stream_fixture), 7), streamed(fixture(whole_fixture), 9, "application/json")
        respx.post(url).mock(
            side_effect=lambda r: stream(r) if msgspec.json.decode(r.content).get("stream") else whole(r)
        )
        return
    respx.post(f"{url}:streamGenerateContent").mock(side_effect=streamed(fixture(stream_fixture), size=7))
    respx.post(f"{url}:generateContent").mock(side_effect=streamed(fixture(whole_fixture), 9, "application/json"))


def arguments(raw: str) -> Any:
    return msgspec.json.decode(raw)


@pytest.mark.parametrize("scenario", SCENARIOS)
@respx.mock
async def test_streamed_answer_reaches_the_sdk_exactly(sdk: openai.AsyncOpenAI, scenario: str) -> None:
    model, url, stream_fixture, whole_fixture, expected = SCENARIOS[scenario]
    mock_upstream(url, stream_fixture, whole_fixture)
    stream = await sdk.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, list[Any]] = {}
    finish, usage = None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            text.append(delta.content or "")
            reasoning.append(getattr(delta, "reasoning_content", None) or "")
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, [None, []])
                if call.function and call.function.name:
                    entry[0] = call.function.name
                entry[1].append(call.function.arguments or "" if call.function else "")
            finish = choice.finish_reason or finish
    assert "".join(text) == expected.text
    assert "".join(reasoning) == expected.reasoning
    assert [(name, arguments("".join(parts))) for name, parts in calls.values()] == expected.tools
    assert finish == expected.finish
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)


@pytest.mark.parametrize("scenario", SCENARIOS)
@respx.mock
async def test_whole_answer_reaches_the_sdk_exactly(sdk: openai.AsyncOpenAI, scenario: str) -> None:
    model, url, stream_fixture, whole_fixture, expected = SCENARIOS[scenario]
    mock_upstream(url, stream_fixture, whole_fixture)
    completion = await sdk.chat.completions.create(model=model, messages=MESSAGES)
    choice = completion.choices[0]
    assert (choice.message.content or "") == expected.text
    assert (getattr(choice.message, "reasoning_content", None) or "") == expected.reasoning
    calls = [(c.function.name, arguments(c.function.arguments)) for c in choice.message.tool_calls or ()]  # type: ignore[union-attr]
    assert calls == expected.tools
    assert all(c.id for c in choice.message.tool_calls or ())
    assert choice.finish_reason == expected.finish
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )


FAILURES: dict[str, tuple[str, str, Callable[[httpx.Request], httpx.Response]]] = {
    "openai-mid-stream": ("openai/gpt-4o", f"{OPENAI}/chat/completions", streamed(fixture("openai_error.sse"))),
    "openai-truncated": ("openai/gpt-4o", f"{OPENAI}/chat/completions", streamed(fixture("openai_text_cut.sse"))),
    "responses-failed": ("codex", f"{OPENAI}/responses", streamed(fixture("responses_failed.sse"))),
    "anthropic-mid-stream": (
        "anthropic/claude",
        "https://anthropic.test/v1/messages",
        streamed(fixture("anthropic_error.sse")),
    ),
    "anthropic-truncated": (
        "anthropic/claude",
        "https://anthropic.test/v1/messages",
        streamed(fixture("anthropic_truncated.sse")),
    ),
    "gemini-mid-stream": (
        "gemini/g",
        "https://gemini.test/v1beta/models/g:streamGenerateContent",
        streamed(fixture("gemini_error.sse")),
    ),
    "ollama-mid-stream": ("ollama/q", "http://ollama.test:11434/api/chat", streamed(fixture("ollama_error.ndjson"))),
}


@pytest.mark.parametrize("stream", [True, False])
@respx.mock
async def test_the_answer_names_the_model_that_answered_and_the_log_keeps_the_one_asked_for(
    sdk: openai.AsyncOpenAI, capfd: pytest.CaptureFixture[str], stream: bool
) -> None:
    respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(fixture("openai_text.sse"), 7))
    if stream:
        chunks = await sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True)
        models = {chunk.model async for chunk in chunks}  # the role chunk too: it waits for the first event
    else:
        models = {(await sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)).model}
    assert models == {"gpt-4o-2024-08-06"}  # the upstream's own name, a dated snapshot
    [line] = [entry for entry in access_lines(capfd) if entry["path"] == "/v1/chat/completions"]
    assert (line["model"], line["upstream_model"]) == ("openai/gpt-4o", "gpt-4o")


@respx.mock
async def test_a_fallback_that_answered_is_the_model_named(capfd: pytest.CaptureFixture[str]) -> None:
    respx.post(f"{OPENAI}/chat/completions").mock(return_value=httpx.Response(503, json={"error": {"message": "no"}}))
    respx.post("http://ollama.test:11434/api/chat").mock(side_effect=streamed(fixture("ollama_text.ndjson"), 5))
    alias = ModelConfig(deployments=[Deployment("openai", "gpt-4o"), Deployment("ollama", "qwen3:8b")], retries=0)
    config = msgspec.structs.replace(CONFIG, models={"smart": alias})
    http = sdk_http(create_app(config))
    async with http, openai.AsyncOpenAI(base_url="http://gateway.test/v1", api_key="x", http_client=http) as client:
        answer = await client.chat.completions.create(model="smart", messages=MESSAGES)
        anthropic_client = anthropic.AsyncAnthropic(base_url="http://gateway.test", api_key="x", http_client=http)
        messages = await anthropic_client.messages.create(model="smart", max_tokens=50, messages=MESSAGES)
        response = await client.responses.create(model="smart", input="hi", store=False)
    assert (answer.model, messages.model, response.model) == ("qwen3", "qwen3", "qwen3")
    lines = [entry for entry in access_lines(capfd) if entry.get("model") == "smart"]
    assert [(line["fallback"], line["deployment"]) for line in lines] == [(True, "ollama/qwen3:8b")] * 3


@pytest.mark.parametrize("stream", [True, False])
@respx.mock
async def test_a_compatible_server_that_never_sends_done_still_answers_whole(
    sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    """Its finish reason came, then the body ended cleanly: the answer is complete, not truncated."""
    respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(fixture("openai_text_no_done.sse"), 11))
    if stream:
        chunks = [
            c async for c in await sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True)
        ]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        whole = await sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
        text, finish = whole.choices[0].message.content or "", [whole.choices[0].finish_reason]
    assert (text, finish) == ("I'm unable \u2028 été 🙂.", ["stop"])


@pytest.mark.parametrize("failure", FAILURES)
@respx.mock
async def test_a_vendor_failure_mid_stream_is_an_sdk_error(sdk: openai.AsyncOpenAI, failure: str) -> None:
    model, url, respond = FAILURES[failure]
    respx.post(url).mock(side_effect=respond)
    stream = await sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


@pytest.mark.parametrize("failure", ["openai-mid-stream", "anthropic-truncated", "ollama-mid-stream"])
@respx.mock
async def test_a_vendor_failure_is_an_sdk_error_when_not_streaming(sdk: openai.AsyncOpenAI, failure: str) -> None:
    model, url, respond = FAILURES[failure]
    respx.post(url).mock(side_effect=respond)
    with pytest.raises(openai.APIStatusError) as info:
        await sdk.chat.completions.create(model=model, messages=MESSAGES)
    assert info.value.status_code in (502, 503)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, {"error": {"message": "Rate limit reached"}}, openai.RateLimitError),
        (401, {"error": {"message": "Incorrect API key provided: sk-openai-se****cret"}}, openai.InternalServerError),
        (400, {"error": {"message": "messages: too long"}}, openai.BadRequestError),
        (404, {"error": {"message": "The model does not exist"}}, openai.NotFoundError),
    ],
)
@respx.mock
async def test_vendor_http_errors_reach_the_sdk_with_the_right_class(
    sdk: openai.AsyncOpenAI, status: int, body: dict[str, Any], error: type[openai.APIStatusError]
) -> None:
    respx.post(f"{OPENAI}/chat/completions").mock(
        return_value=httpx.Response(status, json=body, headers={"retry-after": "2"})
    )
    with pytest.raises(error) as info:
        await sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True)
    assert "secret" not in str(info.value.body)
    assert "openai" in info.value.message
    if status == 429:
        assert info.value.response.headers["retry-after"] == "2"


async def test_a_disabled_vendor_says_how_to_enable_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    http = sdk_http(create_app(GatewayConfig()))
    async with (
        http,
        openai.AsyncOpenAI(base_url="http://gateway.test/v1", api_key="x", http_client=http, max_retries=0) as client,
    ):
        with pytest.raises(openai.NotFoundError, match="ANTHROPIC_API_KEY"):
            await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=MESSAGES)
