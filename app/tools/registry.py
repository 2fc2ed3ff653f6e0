"""The MCP servers the gateway knows: their tools, found at start-up and refreshed, and which a request gets.

A server that is down at start-up is listed as down and tried again at every refresh, and also when
a request asks for its tools; it joins as soon as it answers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
import structlog
from starlette.requests import HTTPConnection

from app.errors import ApiError
from providers.mcp import McpClient, McpError, McpServerSpec, McpTool
from providers.request import ChatRequest, FunctionDefinition, McpTools, Tool
from providers.router import Plan

UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")  # vendors take function names of [A-Za-z0-9_-], up to 64
log = structlog.get_logger("gateway.mcp")
ENCODER = msgspec.json.Encoder()


class ServerState:
    def __init__(self, client: McpClient):
        self.client = client
        self.tools: list[McpTool] = []
        self.error: str | None = "not contacted yet"
        self.refreshed_at: float | None = None
        self.refreshing: asyncio.Task[None] | None = None


class OfferedTool(msgspec.Struct, frozen=True):
    server: str
    name: str  # the tool's own name on its server; the model may see a sanitized one


class McpRegistry:
    def __init__(self, specs: Mapping[str, McpServerSpec], client: httpx.AsyncClient, refresh_seconds: float):
        self.servers = {name: ServerState(McpClient(name, spec, client)) for name, spec in specs.items()}
        self.client = client
        self.refresh_seconds = refresh_seconds
        self.refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Discover every server's tools (a server that is down does not stop start-up), then keep refreshing."""
        await self.refresh_all()
        if self.servers:
            self.refresher = asyncio.ensure_future(self.refresh_forever())

    async def close(self) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
        await self.client.aclose()

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh_all()

    async def refresh_all(self) -> None:
        await asyncio.gather(*(self.refresh(name) for name in self.servers))

    async def refresh(self, name: str) -> None:
        """Read the server's tools again; concurrent callers share one refresh."""
        state = self.servers[name]
        if state.refreshing is None or state.refreshing.done():
            state.refreshing = asyncio.ensure_future(self.list_tools(name, state))
        await asyncio.shield(state.refreshing)

    async def list_tools(self, name: str, state: ServerState) -> None:
        try:
            async with asyncio.timeout(state.client.spec.timeout):
                state.tools = await state.client.list_tools()
        except (McpError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {state.client.spec.timeout:g} s"
            if state.error != reason:
                log.warning("mcp_server_down", server=name, error=reason)
            state.error, state.tools = reason, []
            return
        if state.error is not None:
            log.info("mcp_server_up", server=name, tools=len(state.tools))
        state.error, state.refreshed_at = None, time.time()

    async def tools_of(self, name: str) -> list[McpTool]:
        """The server's tools; a server not up is asked again now, and a 503 says so if it still is not."""
        state = self.servers.get(name)
        if state is None:
            known = ", ".join(sorted(self.servers)) or "none are configured"
            raise ApiError(
                404,
                f"No MCP server is named {name[:100]!r} ({known}). GET /api/v1/mcp/tools lists them.",
                code="mcp_server_not_found",
                type="not_found_error",
                param="tools",
            )
        if state.error is not None:
            await self.refresh(name)
        if state.error is not None:
            raise ApiError(
                503,
                f"MCP server {name!r} is unavailable ({state.error}); its tools cannot be offered. Retry shortly.",
                code="mcp_server_unavailable",
                type="server_error",
                headers={"Retry-After": "5"},
            )
        return state.tools

    def listing(self) -> dict[str, Any]:
        tools = [
            {"server": t.server, "name": t.name, "description": t.description, "input_schema": t.input_schema}
            for state in self.servers.values()
            for t in state.tools
        ]
        servers = [
            {
                "name": name,
                "status": "up" if state.error is None else "down",
                "error": state.error,
                "tools": len(state.tools),
                "refreshed_at": int(state.refreshed_at) if state.refreshed_at else None,
            }
            for name, state in self.servers.items()
        ]
        return {"object": "list", "data": tools, "servers": servers}


async def offer_tools(
    registry: McpRegistry, chat: ChatRequest, plan: Plan
) -> tuple[ChatRequest, dict[str, OfferedTool]]:
    """The request with the MCP tools it asked for (or its alias names) as functions, and what each one is."""
    requests = [tool for tool in chat.tools or () if isinstance(tool, McpTools)]
    requests += [McpTools(server) for server in plan.mcp if server not in {r.server for r in requests}]
    if not requests:
        return chat, {}
    offered: dict[str, OfferedTool] = {}
    functions = chat.function_tools
    taken = {tool.function.name for tool in functions}
    for request in requests:
        for tool in await chosen_tools(registry, request):
            exposed = UNSAFE_NAME.sub("_", tool.name)[:64]
            if exposed in taken:
                raise ApiError(
                    400,
                    f"Two tools would reach the model as {exposed!r} (one of them from MCP server "
                    f"{tool.server!r}). Narrow the servers' tools with allowed_tools, or rename your function.",
                    code="tool_name_clash",
                    param="tools",
                )
            taken.add(exposed)
            offered[exposed] = OfferedTool(tool.server, tool.name)
            functions.append(Tool(FunctionDefinition(exposed, tool.description, tool.input_schema)))
    return msgspec.structs.replace(chat, tools=list(functions)), offered


async def chosen_tools(registry: McpRegistry, request: McpTools) -> list[McpTool]:
    tools = await registry.tools_of(request.server)
    if request.allowed_tools is None:
        return tools
    names = {tool.name for tool in tools}
    unknown = [name for name in request.allowed_tools if name not in names]
    if unknown:
        raise ApiError(
            404,
            f"MCP server {request.server!r} has no tool {unknown[0][:100]!r}; it has {', '.join(sorted(names))}.",
            code="mcp_tool_not_found",
            type="not_found_error",
            param="tools",
        )
    return [tool for tool in tools if tool.name in request.allowed_tools]


def registry_of(connection: HTTPConnection) -> McpRegistry:
    registry: McpRegistry = connection.app.state.mcp
    return registry
