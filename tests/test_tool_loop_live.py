"""The tool loop through a real gateway (uvicorn on 127.0.0.1) and a real MCP server: a client that
leaves mid-tool or while the tools are still being discovered, and a server that is down at start-up
and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterator

import httpx
import pytest

from app.config import GatewayConfig, Reliability, ToolLoopSettings
from app.main import create_app
from providers.base import Deployment, Event, Finish, Start, TextDelta, ToolCallDelta, ToolCallStart, Usage
from providers.mcp import McpServerSpec
from providers.request import ChatRequest, ToolMessage
from providers.router import ModelConfig
from tests.conftest import LiveServer
from tests.mcp_server import ToolServer, free_port


class ToolUser:
    """A model that calls ``tool`` with ``arguments`` once, then answers with the tool's result."""

    name = "fake"
    models: tuple[str, ...] = ("fake",)

    def __init__(self, tool: str, arguments: str):
        self.tool, self.arguments = tool, arguments
        self.calls = 0  # how many times the model was called

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        self.calls += 1
        yield Start()
        result = next((m for m in request.messages if isinstance(m, ToolMessage)), None)
        if result is None:
            yield ToolCallStart(0, "call_1", self.tool)
            yield ToolCallDelta(0, self.arguments)
            yield Finish("tool_calls")
            return
        yield TextDelta(f"The tool said: {result.content}")
        yield Usage(5, 5)
        yield Finish("stop")

    async def aclose(self) -> None:
        return None


def gateway(server_url: str, model: ToolUser, refresh_seconds: float = 300) -> LiveServer:
    config = GatewayConfig(
        reliability=Reliability(retries=0),
        mcp_servers={"tools": McpServerSpec(server_url, timeout=60)},
        tool_loop=ToolLoopSettings(refresh_seconds=refresh_seconds),
        models={"agent": ModelConfig("fake", "fake", mcp=["tools"])},
    )
    return LiveServer(create_app(config, [model]))


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    with ToolServer() as server:
        yield server


async def test_a_client_leaving_mid_tool_stops_the_tool(tool_server: ToolServer) -> None:
    body = {"model": "agent", "messages": [{"role": "user", "content": "wait"}]}
    with gateway(tool_server.url, ToolUser("slow", '{"seconds": 30}')) as live:
        async with httpx.AsyncClient(timeout=30) as client:
            request = asyncio.ensure_future(
                client.post(f"{live.url}/api/v1/chat", json=body, headers={"accept": "text/event-stream"})
            )
            assert await asyncio.to_thread(tool_server.slow_started.wait, 10)
            request.cancel()
            left = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await request
        assert await asyncio.to_thread(tool_server.slow_cancelled.wait, 5)
        assert time.monotonic() - left < 2  # the tool stopped with the client, not after its 30 s


async def test_a_server_down_at_start_up_joins_when_it_comes_back() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    body = {"model": "agent", "messages": [{"role": "user", "content": "add"}]}
    with gateway(url, ToolUser("add", '{"a": 20, "b": 22}'), refresh_seconds=0.2) as live:
        async with httpx.AsyncClient(timeout=30) as client:
            listing = (await client.get(f"{live.url}/api/v1/mcp/tools")).json()
            assert listing["servers"][0]["status"] == "down"
            assert listing["data"] == []
            refused = await client.post(f"{live.url}/v1/chat/completions", json=body)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "mcp_server_unavailable"
            with ToolServer(port):
                # Nothing asks for its tools now: only the periodic refresh can find the server.
                state = live.app.state.mcp.servers["tools"]
                deadline = time.monotonic() + 5
                while state.error is not None:
                    assert time.monotonic() < deadline, "the refresh never found the server"
                    await asyncio.sleep(0.05)
                listing = (await client.get(f"{live.url}/api/v1/mcp/tools")).json()
                assert listing["servers"][0]["status"] == "up"
                assert listing["servers"][0]["refreshed_at"] is not None
                answer = (await client.post(f"{live.url}/v1/chat/completions", json=body)).json()
                assert answer["choices"][0]["message"]["content"] == "The tool said: 42"


async def test_a_client_leaving_during_tool_discovery_never_reaches_the_model() -> None:
    port = free_port()  # down at start-up, so the request itself asks the (slow) server for its tools
    model = ToolUser("add", '{"a": 1, "b": 2}')
    with gateway(f"http://127.0.0.1:{port}/mcp", model) as live, ToolServer(port, list_delay=1.0) as slow:
        async with httpx.AsyncClient(timeout=30) as client:
            conversation = (await client.post(f"{live.url}/api/v1/conversations")).json()["id"]
            body = {"model": "agent", "conversation_id": conversation, "messages": [{"role": "user", "content": "x"}]}
            request = asyncio.ensure_future(client.post(f"{live.url}/v1/chat/completions", json=body))
            assert await asyncio.to_thread(slow.list_started.wait, 10)
            request.cancel()  # the client leaves while the gateway waits for the tool list
            with pytest.raises(asyncio.CancelledError):
                await request
            await asyncio.sleep(2.5)  # the listing is done by now: a request that missed the leaving would run
            stored = (await client.get(f"{live.url}/api/v1/conversations/{conversation}")).json()
    assert model.calls == 0
    assert stored["messages"] == []
