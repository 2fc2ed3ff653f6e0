"""``POST /v1/responses`` through the official openai SDK: every vendor faked at the HTTP layer, the
built-in models, what Codex sends, errors, and streaming and cancellation against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
import respx

from app.config import GatewayConfig, Reliability
from app.main import create_app
from providers.catalog import ProviderSpec
from tests.conftest import LiveServer
from tests.fake_vendor import FakeVendor
from tests.providers.streams import fixture, streamed
from tests.test_reliability import CLOSE_WITHIN, scenario
from tests.test_vendors_sdk import CONFIG, OPENAI, SCENARIOS, Expected, mock_upstream, sdk_http

STATUS = {"stop": "completed", "tool_calls": "completed", "length": "incomplete"}


def seen(response: Any) -> dict[str, Any]:
    """What a client reads of a response, in the terms of ``Expected``."""
    reasoning = [s.text for item in response.output if item.type == "reasoning" for s in item.summary]
    tools = [(item.name, orjson.loads(item.arguments)) for item in response.output if item.type == "function_call"]
    assert all(item.call_id for item in response.output if item.type == "function_call")
    return {
        "text": response.output_text,
        "reasoning": "".join(reasoning),
        "tools": tools,
        "status": response.status,
        "prompt": response.usage.input_tokens,
        "completion": response.usage.output_tokens,
    }


def expected(wanted: Expected) -> dict[str, Any]:
    return {
        "text": wanted.text,
        "reasoning": wanted.reasoning,
        "tools": wanted.tools,
        "status": STATUS[wanted.finish],
        "prompt": wanted.prompt_tokens,
        "completion": wanted.completion_tokens,
    }


@pytest.mark.parametrize("scenario_name", SCENARIOS)
@respx.mock
async def test_every_vendor_streams_to_the_sdk(sdk: openai.AsyncOpenAI, scenario_name: str) -> None:
    model, url, stream_fixture, whole_fixture, wanted = SCENARIOS[scenario_name]
    mock_upstream(url, stream_fixture, whole_fixture)
    async with sdk.responses.stream(model=model, input="hello") as stream:
        numbers = [event.sequence_number async for event in stream]
        response = await stream.get_final_response()
    assert numbers == list(range(len(numbers)))
    assert seen(response) == expected(wanted)


# A Responses deployment's answers are OpenAI's to store, under OpenAI's ids (tested in test_stored_responses).
STORED_BY_THE_GATEWAY = [name for name in SCENARIOS if name != "openai-responses"]


@pytest.mark.parametrize("scenario_name", STORED_BY_THE_GATEWAY)
@respx.mock
async def test_a_second_turn_continues_the_first_with_previous_response_id_on_every_vendor(
    sdk: openai.AsyncOpenAI, scenario_name: str
) -> None:
    model, url, stream_fixture, whole_fixture, wanted = SCENARIOS[scenario_name]
    mock_upstream(url, stream_fixture, whole_fixture)
    async with sdk.responses.stream(model=model, input="hello there") as stream:
        first = await stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    results: list[Any] = [{"type": "function_call_output", "call_id": call.call_id, "output": "42"} for call in calls]
    second = await sdk.responses.create(model=model, input=results or "and then?", previous_response_id=first.id)
    assert second.previous_response_id is None or second.previous_response_id == first.id
    sent = respx.calls.last.request.content.decode()
    assert "hello there" in sent  # the first turn's input, in the vendor's own body
    assert orjson.dumps(wanted.text).decode()[1:-1] in sent  # its answer's text
    for name, _ in wanted.tools:  # and its tool calls, each with its result
        assert name in sent
    assert sent.count("42") >= len(calls)


@pytest.mark.parametrize("scenario_name", SCENARIOS)
@respx.mock
async def test_every_vendor_answers_the_sdk_whole(sdk: openai.AsyncOpenAI, scenario_name: str) -> None:
    model, url, stream_fixture, whole_fixture, wanted = SCENARIOS[scenario_name]
    mock_upstream(url, stream_fixture, whole_fixture)
    response = await sdk.responses.create(model=model, input="hello")
    assert response.id.startswith("resp_")
    assert seen(response) == expected(wanted)


async def test_the_event_sequence_is_openai_s(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model="echo", input="hello there", stream=True)
    types = [event.type async for event in stream]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


async def test_max_output_tokens_ends_as_incomplete(sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="echo", input="one two three four", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    async with sdk.responses.stream(model="echo", input="one two three", max_output_tokens=1) as stream:
        last = [event.type async for event in stream][-1]
    assert last == "response.incomplete"


CODEX_LIKE: dict[str, Any] = {
    "instructions": "You are a coding agent.",
    "input": [
        {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "be kind"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
        {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}, "strict": False},
        {"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "spawn", "parameters": {}}]},
        {"type": "custom", "name": "apply_patch", "description": "Patch files", "format": {"type": "grammar"}},
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "high", "summary": "auto"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "k",
    "client_metadata": {"x": "y"},
    "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
    "max_output_tokens": 500,
}


@respx.mock
async def test_what_codex_sends_reaches_a_chat_upstream_translated(sdk: openai.AsyncOpenAI) -> None:
    route = respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(fixture("openai_text.sse"), 7))
    await sdk.responses.create(model="openai/gpt-4o", extra_body=CODEX_LIKE)
    sent = orjson.loads(route.calls[0].request.content)
    assert [m["role"] for m in sent["messages"]] == [
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert sent["messages"][3]["tool_calls"][0]["function"] == {"name": "exec_command", "arguments": '{"cmd":"ls"}'}
    assert sent["messages"][5]["tool_calls"][0]["function"]["arguments"] == '{"input":"*** Begin Patch"}'
    names = [tool["function"]["name"] for tool in sent["tools"]]
    assert names == ["exec_command", "spawn", "apply_patch"]  # the namespace flattened; web_search left out
    assert sent["tools"][2]["function"]["parameters"]["required"] == ["input"]
    assert (sent["reasoning_effort"], sent["max_completion_tokens"], sent["parallel_tool_calls"]) == (
        "high",
        500,
        False,
    )
    assert sent["response_format"]["json_schema"]["name"] == "out"


@respx.mock
async def test_a_call_of_a_custom_tool_comes_back_as_a_custom_tool_call(sdk: openai.AsyncOpenAI) -> None:
    start = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'
    call = '{"tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"apply_patch","arguments":"{\\"input\\":\\"*** Begin"}}]}'
    more = '{"tool_calls":[{"index":0,"function":{"arguments":" Patch\\"}"}}]}'
    body = b"".join(
        b"data: %s\n\n" % line.encode()
        for line in (start % (call, "null"), start % (more, "null"), start % ("{}", '"tool_calls"'), "[DONE]")
    )
    respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(body, 5))
    tools: Any = [{"type": "custom", "name": "apply_patch", "description": "Patch files"}]
    async with sdk.responses.stream(model="openai/gpt-4o", input="patch it", tools=tools) as stream:
        types = [event.type async for event in stream]
        response = await stream.get_final_response()
    assert "response.custom_tool_call_input.done" in types
    (item,) = response.output
    assert isinstance(item, openai.types.responses.ResponseCustomToolCall)
    assert (item.type, item.call_id, item.name, item.input) == (
        "custom_tool_call",
        "call_9",
        "apply_patch",
        "*** Begin Patch",
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, openai.RateLimitError),
        (400, openai.BadRequestError),
        (404, openai.NotFoundError),
        (503, openai.InternalServerError),
    ],
)
@respx.mock
async def test_upstream_errors_raise_the_sdk_s_own_exceptions(
    sdk: openai.AsyncOpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    respx.post(f"{OPENAI}/chat/completions").mock(
        return_value=httpx.Response(status, json={"error": {"message": "upstream says no"}})
    )
    with pytest.raises(error) as info:
        await sdk.responses.create(model="openai/gpt-4o", input="hi")
    assert "openai" in str(info.value.message)


async def test_client_mistakes_are_400s_that_say_why(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="item_reference"):
        await sdk.responses.create(model="echo", input=[{"type": "item_reference", "id": "x"}])
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.create(model="nope", input="hi")


@respx.mock
async def test_a_failure_mid_stream_is_response_failed(sdk: openai.AsyncOpenAI) -> None:
    respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(fixture("openai_error.sse")))
    stream = await sdk.responses.create(model="openai/gpt-4o", input="hi", stream=True)
    events = [event async for event in stream]
    types = [event.type for event in events]
    assert types[-2:] == ["error", "response.failed"]
    assert "response.completed" not in types
    failed = events[-1]
    assert isinstance(failed, openai.types.responses.ResponseFailedEvent)
    assert failed.response.error is not None
    assert "openai" in failed.response.error.message


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
    body = {"model": "synthetic:ttft_ms=20,delay_ms=100,tokens=4", "input": "hi", "stream": True}
    arrivals = []
    async with (
        httpx.AsyncClient(base_url=live.url) as client,
        client.stream("POST", "/v1/responses", json=body) as response,
    ):
        async for chunk in response.aiter_raw():
            arrivals += [time.monotonic()] * chunk.count(b"event: response.output_text.delta")
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] > 0.2  # 300 ms apart: sent as they came


async def test_a_client_that_leaves_mid_stream_closes_the_upstream(live: LiveServer, vendor: FakeVendor) -> None:
    slow = scenario("ok", tokens=1000, delay_ms=20)
    async with openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.responses.create(model=f"openai/{slow}", input="hi", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
        await stream.close()
        left = time.monotonic()
    closed = await asyncio.to_thread(vendor.closed_at, slow)
    assert closed - left < CLOSE_WITHIN


@pytest.mark.parametrize("size", [1, 7, 64])
@respx.mock
async def test_a_responses_deployment_gets_the_body_as_it_came_and_its_events_come_back_byte_for_byte(
    size: int,
) -> None:
    events = fixture("responses_tool_full.sse")
    route = respx.post(f"{OPENAI}/responses").mock(side_effect=streamed(events, size))
    sent = {
        "model": "codex",
        "input": [{"type": "item_reference", "id": "msg_1"}, {"role": "user", "content": "go on"}],
        "previous_response_id": "resp_earlier",
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "web_search"}],
        "stream": True,
        "future_field": {"x": [1, 2]},
    }
    async with sdk_http(create_app(CONFIG)) as http:
        response = await http.post(
            "/v1/responses",
            content=orjson.dumps(sent),
            headers={"content-type": "application/json", "openai-beta": "b1"},
        )
    assert response.status_code == 200
    assert response.content == events
    upstream = route.calls[0].request
    assert upstream.content == orjson.dumps(sent | {"model": "gpt-5-codex"})
    assert upstream.headers["openai-beta"] == "b1"


@respx.mock
async def test_a_whole_response_from_a_responses_deployment_is_its_own_body() -> None:
    answer = fixture("responses_tool.json")
    respx.post(f"{OPENAI}/responses").mock(side_effect=streamed(answer, 9, "application/json"))
    async with sdk_http(create_app(CONFIG)) as http:
        response = await http.post("/v1/responses", json={"model": "codex", "input": "hi", "previous_response_id": "r"})
    assert response.content == answer


async def test_a_previous_response_id_the_gateway_does_not_hold_is_a_404_for_other_models(
    sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.NotFoundError, match="api: responses"):
        await sdk.responses.create(model="echo", input="hi", previous_response_id="resp_1")
