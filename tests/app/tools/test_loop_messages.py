"""The MCP tool loop behind ``POST /v1/messages``: the gateway runs the model's MCP calls itself, so an
Anthropic client sees only the answer (no ``tool_use`` or ``tool_result`` of them), with the usage of
every round, from every vendor; its own tools still come back to it as ``tool_use`` blocks."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest
import respx

from tests.app.tools.test_loop import (
    ANTHROPIC,
    OPENAI,
    VENDORS,
    add_then_answer,
    answers,
    anthropic_call,
    anthropic_text,
    config,
    native_events,
    openai_chunk,
    sse,
)
from tests.mcp_server import ToolServer

QUESTION = [{"role": "user", "content": "What is 2 + 40?"}]


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_an_anthropic_client_sees_only_the_answer_of_the_loop(
    vendor: str, tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    route = add_then_answer(mock, vendor)
    client = client_for(config(tool_server, vendor))
    response = await client.post(
        "/v1/messages", json={"model": "agent", "max_tokens": 100, "stream": True, "messages": QUESTION}
    )
    events = native_events(response.text)
    blocks = [data["content_block"]["type"] for name, data in events if name == "content_block_start"]
    assert blocks == ["text"]  # the loop's tool_use and its result stay inside the gateway
    text_deltas = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    assert "".join(text_deltas) == "The sum is 42."
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["input_tokens"] + delta["usage"]["cache_read_input_tokens"] == 30  # both rounds
    assert events[-1][0] == "message_stop"
    assert len(route.calls) == 2
    assert b"42" in route.calls[1].request.content  # round two carried the tool's result


async def test_a_whole_answer_of_the_loop_is_one_text_block(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    mock.post(ANTHROPIC).mock(side_effect=answers(anthropic_call("add", '{"a":1,"b":2}'), anthropic_text("It is 3.")))
    client = client_for(config(tool_server, "anthropic"))
    message = (
        await client.post("/v1/messages", json={"model": "agent", "max_tokens": 50, "messages": QUESTION})
    ).json()
    assert message["content"] == [{"type": "text", "text": "It is 3."}]
    assert message["stop_reason"] == "end_turn"
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (30, 9)


async def test_mcp_tools_asked_for_in_the_request_are_offered_by_the_gateway(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """``{"type": "mcp"}`` is the gateway's: even for an Anthropic model it is expanded, never sent upstream."""
    route = mock.post(ANTHROPIC).mock(side_effect=answers(anthropic_text("Hi.")))
    client = client_for(config(tool_server, "anthropic"))
    body = {
        "model": "anthropic/claude-sonnet-4-5",
        "max_tokens": 50,
        "messages": QUESTION,
        "tools": [{"type": "mcp", "server": "tools", "allowed_tools": ["add"]}],
        "future_field": 1,
    }
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200
    sent = orjson.loads(route.calls[0].request.content)
    assert [tool["name"] for tool in sent["tools"]] == ["add"]
    assert "input_schema" in sent["tools"][0]
    assert "future_field" not in sent  # translated, as the gateway changed the request


async def test_the_client_s_own_tool_comes_back_as_tool_use_after_the_gateway_s_ran(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    both = (
        '{"role":"assistant","content":null,"tool_calls":['
        '{"index":0,"id":"call_1","type":"function","function":{"name":"add","arguments":"{\\"a\\":1,\\"b\\":1}"}},'
        '{"index":1,"id":"call_2","type":"function","function":{"name":"forecast","arguments":"{\\"city\\":\\"Oslo\\"}"}}]}'
    )
    mock.post(OPENAI).mock(side_effect=answers(sse(openai_chunk(both), openai_chunk("{}", '"tool_calls"'), "[DONE]")))
    client = client_for(config(tool_server, "openai"))
    forecast = {"name": "forecast", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    body = {"model": "agent", "max_tokens": 50, "stream": True, "messages": QUESTION, "tools": [forecast]}
    events = native_events((await client.post("/v1/messages", json=body)).text)
    uses = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert uses == [{"type": "tool_use", "id": "call_2", "name": "forecast", "input": {}}]
    partial = "".join(
        d["delta"]["partial_json"] for n, d in events if d.get("delta", {}).get("type") == "input_json_delta"
    )
    assert orjson.loads(partial) == {"city": "Oslo"}
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == "tool_use"
