"""The MCP client against a real MCP server (the official ``mcp`` package) on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from providers._http import make_client
from providers.mcp import McpClient, McpError, McpServerSpec
from tests.mcp_server import ToolServer, free_port


@pytest.fixture(params=["sse", "json"])
def server(request: pytest.FixtureRequest) -> Iterator[ToolServer]:
    """The server answering in SSE streams (its default) or in plain JSON bodies."""
    with ToolServer(json_response=request.param == "json") as running:
        yield running


@pytest.fixture(params=["aiohttp", "httpx"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    client = make_client(request.param)
    yield client
    await client.aclose()


async def test_tools_are_listed_across_pages(server: ToolServer, http: httpx.AsyncClient) -> None:
    client = McpClient("tools", McpServerSpec(server.url), http)
    tools = await client.list_tools()
    assert sorted(t.name for t in tools) == ["add", "fail", "slow", "weather"]  # two pages of two
    add = next(t for t in tools if t.name == "add")
    assert (add.server, add.description) == ("tools", "Add two whole numbers.")
    assert add.input_schema["required"] == ["a", "b"]
    assert client.session_id  # the server made a session, and it is kept


async def test_a_tool_answers_and_a_failing_tool_is_an_error_outcome(
    server: ToolServer, http: httpx.AsyncClient
) -> None:
    client = McpClient("tools", McpServerSpec(server.url), http)
    assert (await client.call_tool("add", {"a": 2, "b": 40})).text == "42"
    failed = await client.call_tool("fail", {})
    assert failed.is_error
    assert "fail" in failed.text
    unknown = await client.call_tool("nope", {})
    assert unknown.is_error


async def test_a_restarted_server_gets_a_new_session(http: httpx.AsyncClient) -> None:
    port = free_port()
    with ToolServer(port):
        client = McpClient("tools", McpServerSpec(f"http://127.0.0.1:{port}/mcp"), http)
        await client.list_tools()
        first = client.session_id
    with ToolServer(port):  # the same address, no memory of the old session: it answers 404
        assert (await client.call_tool("add", {"a": 1, "b": 1})).text == "2"
        assert client.session_id not in (None, first)


async def test_a_server_that_is_down_is_a_clear_error(http: httpx.AsyncClient) -> None:
    client = McpClient("tools", McpServerSpec(f"http://127.0.0.1:{free_port()}/mcp", timeout=2), http)
    with pytest.raises(McpError, match="cannot be reached"):
        await client.list_tools()


async def test_headers_from_the_config_are_sent(server: ToolServer) -> None:
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.headers.get("authorization", ""))

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        client = McpClient("tools", McpServerSpec(server.url, {"Authorization": "Bearer tool-secret"}), http)
        await client.list_tools()
    assert seen
    assert set(seen) == {"Bearer tool-secret"}


async def test_cancelling_a_call_tells_the_server_which_stops_the_tool(
    server: ToolServer, http: httpx.AsyncClient
) -> None:
    client = McpClient("tools", McpServerSpec(server.url), http)
    call = asyncio.ensure_future(client.call_tool("slow", {"seconds": 30}))
    assert await asyncio.to_thread(server.slow_started.wait, 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await asyncio.to_thread(server.slow_cancelled.wait, 5)  # notifications/cancelled reached it
