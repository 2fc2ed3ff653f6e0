"""The MCP registry against a real MCP server on 127.0.0.1: discovery, listing, and what a request is offered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from app.errors import ApiError
from app.tools.registry import McpRegistry, offer_tools
from providers import make_client
from providers.mcp import McpServerSpec
from providers.request import CHAT_REQUEST_DECODER, ChatRequest
from providers.router import Plan
from tests.mcp_server import ToolServer, free_port

PLAN = Plan([])


@pytest.fixture(scope="module")
def tool_server() -> Iterator[ToolServer]:
    with ToolServer() as server:
        yield server


@pytest.fixture
async def registry(tool_server: ToolServer) -> AsyncIterator[McpRegistry]:
    down = f"http://127.0.0.1:{free_port()}/mcp"
    specs = {"tools": McpServerSpec(tool_server.url, timeout=10), "down": McpServerSpec(down, timeout=2)}
    registry = McpRegistry(specs, make_client("httpx"), refresh_seconds=300)
    await registry.start()
    yield registry
    await registry.close()


def chat(tools: list[dict[str, Any]]) -> ChatRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    return CHAT_REQUEST_DECODER.decode(orjson.dumps(body))


def names(request: ChatRequest) -> list[str]:
    return [tool.function.name for tool in request.function_tools]


async def test_start_up_lists_every_server_up_or_down(registry: McpRegistry) -> None:
    listing = registry.listing()
    servers = {server["name"]: server for server in listing["servers"]}
    assert (servers["tools"]["status"], servers["tools"]["tools"], servers["tools"]["error"]) == ("up", 4, None)
    assert servers["down"]["status"] == "down"
    assert "cannot be reached" in servers["down"]["error"]
    assert {tool["name"] for tool in listing["data"]} == {"add", "weather", "slow", "fail"}  # every page of them


async def test_a_request_is_offered_a_server_s_tools_beside_its_own_functions(registry: McpRegistry) -> None:
    own = {"type": "function", "function": {"name": "mine", "parameters": {"type": "object"}}}
    offered_chat, offered = await offer_tools(registry, chat([own, {"type": "mcp", "server": "tools"}]), PLAN)
    assert names(offered_chat) == ["mine", "add", "weather", "slow", "fail"]
    assert offered["add"].server == "tools"
    assert "mine" not in offered


async def test_an_alias_offers_its_servers_and_allowed_tools_narrow_them(registry: McpRegistry) -> None:
    _, by_alias = await offer_tools(registry, chat([]), Plan([], mcp=("tools",)))
    assert set(by_alias) == {"add", "weather", "slow", "fail"}
    narrowed, _ = await offer_tools(
        registry, chat([{"type": "mcp", "server": "tools", "allowed_tools": ["add"]}]), PLAN
    )
    assert names(narrowed) == ["add"]


@pytest.mark.parametrize(
    ("tools", "status", "code"),
    [
        ([{"type": "mcp", "server": "nowhere"}], 404, "mcp_server_not_found"),
        ([{"type": "mcp", "server": "tools", "allowed_tools": ["nope"]}], 404, "mcp_tool_not_found"),
        ([{"type": "mcp", "server": "down"}], 503, "mcp_server_unavailable"),
        (
            [{"type": "function", "function": {"name": "add"}}, {"type": "mcp", "server": "tools"}],
            400,
            "tool_name_clash",
        ),
    ],
)
async def test_tools_that_cannot_be_offered_say_why(
    registry: McpRegistry, tools: list[dict[str, Any]], status: int, code: str
) -> None:
    with pytest.raises(ApiError) as refused:
        await offer_tools(registry, chat(tools), PLAN)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert refused.value.param == (None if status == 503 else "tools")  # the request is fine; the server is not


async def test_a_down_server_is_asked_again_when_a_request_wants_it(tool_server: ToolServer) -> None:
    port = free_port()
    registry = McpRegistry(
        {"late": McpServerSpec(f"http://127.0.0.1:{port}/mcp", timeout=5)}, make_client("httpx"), 300
    )
    await registry.start()
    try:
        assert registry.servers["late"].error is not None
        with ToolServer(port):
            tools = await registry.tools_of("late")
        assert {tool.name for tool in tools} == {"add", "weather", "slow", "fail"}
        assert registry.servers["late"].error is None
    finally:
        await registry.close()
