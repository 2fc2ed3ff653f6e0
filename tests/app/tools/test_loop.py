"""The MCP tool loop: a real MCP server on 127.0.0.1, and each vendor's model faked over respx.

Round one, the model calls ``add`` (an MCP tool); the gateway runs it on the server, adds the
result to the conversation and calls the model again; round two, the model answers with text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import respx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from app.config import GatewayConfig, HttpSettings, Reliability, ToolLoopSettings
from app.main import create_app
from providers.catalog import ProviderSpec
from providers.mcp import McpServerSpec
from providers.router import ModelConfig
from tests.mcp_server import ToolServer

OPENAI = "https://openai.test/v1/chat/completions"
RESPONSES = "https://openai.test/v1/responses"
ANTHROPIC = "https://anthropic.test/v1/messages"
GEMINI = "https://gemini.test/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
OLLAMA = "http://ollama.test:11434/api/chat"


def sse(*payloads: str, events: tuple[str, ...] = ()) -> bytes:
    if events:
        return b"".join(
            b"event: %s\ndata: %s\n\n" % (e.encode(), p.encode()) for e, p in zip(events, payloads, strict=True)
        )
    return b"".join(b"data: %s\n\n" % p.encode() for p in payloads)


def openai_chunk(delta: str, finish: str = "null") -> str:
    return f'{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}'


def openai_call(name: str, arguments: str, call_id: str = "call_1") -> bytes:
    start = f'{{"role":"assistant","content":null,"tool_calls":[{{"index":0,"id":"{call_id}","type":"function","function":{{"name":"{name}","arguments":""}}}}]}}'
    args = '{"tool_calls":[{"index":0,"function":{"arguments":' + orjson.dumps(arguments).decode() + "}}]}"
    usage = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}'
    return sse(openai_chunk(start), openai_chunk(args), openai_chunk("{}", '"tool_calls"'), usage, "[DONE]")


def openai_text(text: str) -> bytes:
    usage = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":4}}'
    return sse(
        openai_chunk('{"role":"assistant","content":""}'),
        openai_chunk('{"content":' + orjson.dumps(text).decode() + "}"),
        openai_chunk("{}", '"stop"'),
        usage,
        "[DONE]",
    )


ANTHROPIC_EVENTS = (
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
)
MESSAGE_START = '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"usage":{"input_tokens":%d,"output_tokens":1}}}'


def anthropic_call(name: str, arguments: str) -> bytes:
    return sse(
        MESSAGE_START % 10,
        f'{{"type":"content_block_start","index":0,"content_block":{{"type":"tool_use","id":"toolu_1","name":"{name}","input":{{}}}}}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":'
        + orjson.dumps(arguments).decode()
        + "}}",
        '{"type":"content_block_stop","index":0}',
        '{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}}',
        '{"type":"message_stop"}',
        events=ANTHROPIC_EVENTS,
    )


def anthropic_text(text: str) -> bytes:
    return sse(
        MESSAGE_START % 20,
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
        + orjson.dumps(text).decode()
        + "}}",
        '{"type":"content_block_stop","index":0}',
        '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}',
        '{"type":"message_stop"}',
        events=ANTHROPIC_EVENTS,
    )


RESPONSE_DONE = (
    '{"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed","output":[],'
    '"usage":{"input_tokens":%d,"output_tokens":%d,"total_tokens":0}}}'
)


def responses_call(name: str, arguments: str) -> bytes:
    item = {
        "id": "fc_1",
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": "call_r1",
        "name": name,
    }
    return sse(
        '{"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}',
        orjson.dumps({"type": "response.output_item.added", "output_index": 0, "item": item}).decode(),
        orjson.dumps(
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": arguments}
        ).decode(),
        orjson.dumps(
            {
                "type": "response.function_call_arguments.done",
                "item_id": "fc_1",
                "output_index": 0,
                "arguments": arguments,
            }
        ).decode(),
        RESPONSE_DONE % (10, 5),
        events=(
            "response.created",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.completed",
        ),
    )


def responses_text(text: str) -> bytes:
    return sse(
        '{"type":"response.created","response":{"id":"resp_2","object":"response","status":"in_progress","output":[]}}',
        orjson.dumps(
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": text,
            }
        ).decode(),
        RESPONSE_DONE % (20, 4),
        events=("response.created", "response.output_text.delta", "response.completed"),
    )


def gemini_call(name: str, arguments: str) -> bytes:
    part = {"functionCall": {"name": name, "args": orjson.loads(arguments)}}
    return sse(
        orjson.dumps(
            {
                "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
            }
        ).decode()
    )


def gemini_text(text: str) -> bytes:
    return sse(
        orjson.dumps(
            {
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 4},
            }
        ).decode()
    )


def ollama_lines(message: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> bytes:
    """One NDJSON line with ``message``, then the closing line with the counts."""
    head = {"model": "m", "created_at": "2025-01-01T00:00:00Z"}
    done = {"role": "assistant", "content": ""}
    lines = [
        {**head, "message": {"role": "assistant", **message}, "done": False},
        {
            **head,
            "message": done,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt_tokens,
            "eval_count": completion_tokens,
        },
    ]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def ollama_call(name: str, arguments: str) -> bytes:
    call = {"function": {"name": name, "arguments": orjson.loads(arguments)}}
    return ollama_lines({"content": "", "tool_calls": [call]}, 10, 5)


def ollama_text(text: str) -> bytes:
    return ollama_lines({"content": text}, 20, 4)


# vendor: (provider, model, URL, a tool call, a text answer, content type, where the result appears upstream)
VENDORS: dict[str, tuple[str, str, str, Callable[[str, str], bytes], Callable[[str], bytes], str]] = {
    "openai": ("openai", "gpt-5", OPENAI, openai_call, openai_text, "text/event-stream"),
    "openai-responses": ("openai", "gpt-5", RESPONSES, responses_call, responses_text, "text/event-stream"),
    "anthropic": ("anthropic", "claude-sonnet-4-5", ANTHROPIC, anthropic_call, anthropic_text, "text/event-stream"),
    "gemini": ("gemini", "gemini-2.5-flash", GEMINI, gemini_call, gemini_text, "text/event-stream"),
    "ollama": ("ollama", "llama3.2", OLLAMA, ollama_call, ollama_text, "application/x-ndjson"),
}


def config(tool_server: ToolServer, vendor: str = "openai", **extra: Any) -> GatewayConfig:
    provider, model, url, *_ = VENDORS[vendor]
    return GatewayConfig(
        reliability=Reliability(retries=0),
        http=HttpSettings(transport="httpx"),  # respx fakes httpx's own transport; the MCP server is passed through
        providers={
            "openai": ProviderSpec("openai", "https://openai.test/v1", "sk-openai"),
            "anthropic": ProviderSpec("anthropic", "https://anthropic.test", "sk-ant"),
            "gemini": ProviderSpec("gemini", "https://gemini.test", "AIza-key"),
            "ollama": ProviderSpec("ollama", "http://ollama.test:11434"),
        },
        mcp_servers={"tools": McpServerSpec(tool_server.url, timeout=extra.pop("tool_timeout", 30.0))},
        models={"agent": ModelConfig(provider, model, "responses" if url == RESPONSES else "chat", mcp=["tools"])},
        **extra,
    )


def answers(*bodies: bytes, content_type: str = "text/event-stream") -> Callable[[httpx.Request], httpx.Response]:
    """A respx side effect answering each request with the next body."""
    remaining = list(bodies)

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=remaining.pop(0), headers={"content-type": content_type})

    return respond


def add_then_answer(mock: respx.MockRouter, vendor: str) -> respx.Route:
    """The vendor's model calls ``add`` (2 + 40), then answers "The sum is 42."."""
    _, _, url, call, text, content_type = VENDORS[vendor]
    answer = answers(call("add", '{"a":2,"b":40}'), text("The sum is 42."), content_type=content_type)
    return mock.post(url).mock(side_effect=answer)


def native_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], orjson.loads(fields["data"])))
    return events


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_the_model_uses_an_mcp_tool_in_every_dialect(
    vendor: str, tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    route = add_then_answer(mock, vendor)
    client = client_for(config(tool_server, vendor))
    response = await client.post(
        "/api/v1/chat",
        json={"model": "agent", "messages": [{"role": "user", "content": "What is 2 + 40?"}]},
        headers={"accept": "text/event-stream"},
    )
    events = native_events(response.text)
    names = [name for name, _ in events]
    assert names == ["tool_call", "tool_result", "token", "complete"]
    assert events[0][1]["name"] == "add"
    assert events[0][1]["server"] == "tools"
    assert orjson.loads(events[0][1]["arguments"]) == {"a": 2, "b": 40}
    assert (events[1][1]["content"], events[1][1]["is_error"]) == ("42", False)
    assert events[2][1]["content"] == "The sum is 42."
    assert events[3][1]["usage"]["prompt_tokens"] == 30  # summed over both rounds
    assert events[3][1]["finish_reason"] == "stop"
    # Round two carried the tool's result back to the model, in the vendor's own form.
    second = route.calls[1].request.content
    assert b"42" in second
    assert b'"add"' in second
    assert len(route.calls) == 2
    # The tools went to the vendor as functions, with the server's own schema.
    assert b'"required":["a","b"]' in route.calls[0].request.content


async def test_chat_completions_shows_only_the_final_answer_with_summed_usage(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    mock.post(OPENAI).mock(side_effect=answers(openai_call("add", '{"a":1,"b":2}'), openai_text("It is 3.")))
    client = client_for(config(tool_server))
    body = {"model": "agent", "messages": [{"role": "user", "content": "1+2?"}]}
    whole = (await client.post("/v1/chat/completions", json=body)).json()
    assert whole["choices"][0]["message"] == {"content": "It is 3.", "role": "assistant", "refusal": None}
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert (whole["usage"]["prompt_tokens"], whole["usage"]["completion_tokens"]) == (30, 9)


async def test_streamed_chat_completions_carry_no_mcp_tool_calls(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    mock.post(OPENAI).mock(side_effect=answers(openai_call("add", '{"a":1,"b":2}'), openai_text("It is 3.")))
    client = client_for(config(tool_server))
    body = {"model": "agent", "stream": True, "messages": [{"role": "user", "content": "1+2?"}]}
    text = (await client.post("/v1/chat/completions", json=body)).text
    assert "tool_calls" not in text
    assert '"content":"It is 3."' in text
    assert text.endswith("data: [DONE]\n\n")


async def test_a_request_can_ask_for_some_tools_of_a_server(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    route = mock.post(OPENAI).mock(side_effect=answers(openai_text("Hello.")))
    client = client_for(config(tool_server))
    body = {
        "model": "openai/gpt-5",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "mcp", "server": "tools", "allowed_tools": ["weather"]}],
    }
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    sent = orjson.loads(route.calls[0].request.content)
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["weather"]


async def test_client_functions_and_mcp_tools_mix(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    both = sse(
        openai_chunk(
            '{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"add","arguments":"{\\"a\\":1,\\"b\\":1}"}}]}'
        ),
        openai_chunk(
            '{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"book_table","arguments":"{\\"people\\":2}"}}]}'
        ),
        openai_chunk("{}", '"tool_calls"'),
        "[DONE]",
    )
    mock.post(OPENAI).mock(side_effect=answers(both))
    client = client_for(config(tool_server))
    book = {"type": "function", "function": {"name": "book_table", "parameters": {"type": "object"}}}
    body = {"model": "agent", "messages": [{"role": "user", "content": "book"}], "tools": [book]}
    adds = tool_server.calls.count("add")  # the server is shared by this module's tests
    answer = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in answer["message"]["tool_calls"]] == ["book_table"]
    assert tool_server.calls.count("add") == adds + 1  # the MCP call of the same round ran


async def test_a_failing_tool_is_an_error_result_the_model_reads(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    route = mock.post(OPENAI).mock(side_effect=answers(openai_call("fail", "{}"), openai_text("The tool failed.")))
    client = client_for(config(tool_server))
    response = await client.post(
        "/api/v1/chat",
        json={"model": "agent", "messages": [{"role": "user", "content": "try"}]},
        headers={"accept": "text/event-stream"},
    )
    result = dict(native_events(response.text))["tool_result"]
    assert result["is_error"] is True
    assert "fail" in result["content"]
    tool_message = orjson.loads(route.calls[1].request.content)["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "fail" in tool_message["content"]


async def test_a_tool_that_times_out_is_an_error_result(
    tool_server: ToolServer,
    mock: respx.MockRouter,
    client_for: Callable[..., httpx.AsyncClient],
    capfd: pytest.CaptureFixture[str],
) -> None:
    mock.post(OPENAI).mock(side_effect=answers(openai_call("slow", '{"seconds":5}'), openai_text("Too slow.")))
    client = client_for(config(tool_server, tool_timeout=0.3))
    response = await client.post(
        "/api/v1/chat",
        json={"model": "agent", "messages": [{"role": "user", "content": "wait"}]},
        headers={"accept": "text/event-stream"},
    )
    result = dict(native_events(response.text))["tool_result"]
    assert result["is_error"] is True
    assert "did not answer within 0.3 s" in result["content"]
    line = next(orjson.loads(out) for out in capfd.readouterr().out.splitlines() if '"tool_calls"' in out)
    assert line["tool_calls"][0]["outcome"] == "timeout"
    assert line["tool_calls"][0]["server"] == "tools"
    assert "arguments" not in line["tool_calls"][0]  # only with LOG_CONTENT


async def test_the_round_limit_ends_the_answer_with_an_error(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    mock.post(OPENAI).mock(side_effect=answers(*[openai_call("add", '{"a":1,"b":1}', f"call_{i}") for i in range(2)]))
    client = client_for(config(tool_server, tool_loop=ToolLoopSettings(max_rounds=2)))
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "agent", "stream": True, "messages": [{"role": "user", "content": "loop"}]},
    )
    assert '"code":"tool_loop_limit"' in response.text
    assert "[DONE]" not in response.text


@pytest.mark.parametrize(
    ("tools", "status", "code"),
    [
        ([{"type": "mcp", "server": "nowhere"}], 404, "mcp_server_not_found"),
        ([{"type": "mcp", "server": "tools", "allowed_tools": ["teleport"]}], 404, "mcp_tool_not_found"),
        (
            [{"type": "mcp", "server": "tools"}, {"type": "function", "function": {"name": "add"}}],
            400,
            "tool_name_clash",
        ),
        ([{"type": "mcp", "server": "tools", "colour": "red"}], 400, "invalid_value"),
    ],
)
async def test_tool_requests_that_cannot_be_served_say_why(
    tool_server: ToolServer, client_for: Callable[..., httpx.AsyncClient], tools: list[Any], status: int, code: str
) -> None:
    client = client_for(config(tool_server))
    body = {"model": "openai/gpt-5", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_the_tool_list_names_every_tool_and_server(
    tool_server: ToolServer, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    listing = (await client_for(config(tool_server)).get("/api/v1/mcp/tools")).json()
    assert sorted(t["name"] for t in listing["data"]) == ["add", "fail", "slow", "weather"]
    assert listing["servers"][0]["name"] == "tools"
    assert listing["servers"][0]["status"] == "up"
    assert listing["servers"][0]["tools"] == 4


def test_the_websocket_shows_the_loop_as_it_runs(tool_server: ToolServer, mock: respx.MockRouter) -> None:
    mock.post(OPENAI).mock(side_effect=answers(openai_call("weather", '{"city":"Oslo"}'), openai_text("Sunny.")))
    with TestClient(create_app(config(tool_server))) as client, client.websocket_connect("/ws/chat") as socket:
        socket.send_json(
            {"type": "chat", "request_id": "r1", "model": "agent", "messages": [{"role": "user", "content": "Oslo?"}]}
        )
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in ("complete", "error"):
            frames.append(socket.receive_json())
    assert [f["type"] for f in frames] == ["status", "tool_call", "tool_result", "token", "complete"]
    assert frames[2]["content"] == "Sunny and 21 °C in Oslo"
    assert frames[2]["request_id"] == "r1"


async def test_a_conversation_keeps_the_tool_rounds_for_the_next_turn(
    tool_server: ToolServer, mock: respx.MockRouter, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    route = mock.post(OPENAI).mock(
        side_effect=answers(
            openai_call("add", '{"a":2,"b":40}'), openai_text("The sum is 42."), openai_text("You asked for a sum.")
        )
    )
    client = client_for(config(tool_server))
    conversation = (await client.post("/api/v1/conversations")).json()["id"]
    body = {"model": "agent", "conversation_id": conversation}
    await client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "2 + 40?"}]})
    stored = (await client.get(f"/api/v1/conversations/{conversation}")).json()["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "2 + 40?"),
        ("assistant", None),
        ("tool", "42"),
        ("assistant", "The sum is 42."),
    ]
    assert stored[1]["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a":2,"b":40}'}
    assert stored[2]["tool_call_id"] == stored[1]["tool_calls"][0]["id"]
    await client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "What was it?"}]})
    sent = orjson.loads(route.calls[2].request.content)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]


async def test_each_tool_call_is_a_span_beside_the_model_calls(
    tool_server: ToolServer,
    mock: respx.MockRouter,
    client_for: Callable[..., httpx.AsyncClient],
    spans: InMemorySpanExporter,
) -> None:
    route = add_then_answer(mock, "openai")
    client = client_for(config(tool_server))
    body = {"model": "agent", "messages": [{"role": "user", "content": "What is 2 + 40?"}]}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    finished = {span.name: span for span in spans.get_finished_spans()}
    tool, attempt, call = finished["execute_tool add"], finished["chat gpt-5"], finished["chat agent"]
    assert dict(tool.attributes or {})["gen_ai.tool.name"] == "add"
    assert dict(tool.attributes or {})["mcp.server"] == "tools"
    assert tool.parent is not None
    assert tool.parent.span_id == attempt.context.span_id
    assert attempt.parent is not None
    assert attempt.parent.span_id == call.context.span_id
    assert dict(call.attributes or {})["gen_ai.usage.input_tokens"] == 30  # both rounds
    assert all("traceparent" in request.request.headers for request in route.calls)  # both model calls
