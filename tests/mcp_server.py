"""A real MCP server (the official ``mcp`` package) on 127.0.0.1, serving a few tools for the tests.

Tools: ``add`` (two integers), ``weather`` (a city), ``slow`` (sleeps, and records whether it was
cancelled), ``fail`` (raises). ``tools/list`` answers two tools a page, so clients must follow
``nextCursor``; ``list_delay`` makes each page slow. It runs uvicorn in a thread of its own; it can
be stopped and started again on the same port, which forgets every session, as a restarted server
does.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import ListToolsResult

PAGE = 2


class PagedServer(MCPServer):
    list_delay = 0.0  # seconds each tools/list page takes, for a slow server
    list_started: threading.Event | None = None

    async def _handle_list_tools(self, ctx: Any, params: Any) -> ListToolsResult:
        if self.list_started is not None:
            self.list_started.set()
        await asyncio.sleep(self.list_delay)
        tools = await self.list_tools()
        start = int(params.cursor) if params is not None and params.cursor else 0
        more = start + PAGE < len(tools)
        return ListToolsResult(tools=tools[start : start + PAGE], next_cursor=str(start + PAGE) if more else None)


class ToolServer:
    def __init__(self, port: int = 0, json_response: bool = False, list_delay: float = 0.0):
        self.port = port or free_port()
        self.list_delay = list_delay
        self.list_started = threading.Event()
        self.json_response = json_response
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.slow_started = threading.Event()
        self.slow_cancelled = threading.Event()
        self.calls: list[str] = []
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def build(self) -> MCPServer:
        mcp = PagedServer("test-tools")
        mcp.list_delay, mcp.list_started = self.list_delay, self.list_started

        @mcp.tool()
        def add(a: int, b: int) -> int:
            """Add two whole numbers."""
            self.calls.append("add")
            return a + b

        @mcp.tool()
        def weather(city: str) -> str:
            """Today's weather in a city."""
            self.calls.append("weather")
            return f"Sunny and 21 °C in {city}"

        @mcp.tool()
        async def slow(seconds: float) -> str:
            """Wait, then answer."""
            self.calls.append("slow")
            self.slow_started.set()
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                self.slow_cancelled.set()
                raise
            return "done waiting"

        @mcp.tool()
        def fail() -> str:
            """Always fails."""
            self.calls.append("fail")
            raise ValueError("the tool broke")

        return mcp

    def start(self) -> ToolServer:
        app = self.build().streamable_http_app(json_response=self.json_response)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the MCP server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
        self.server = self.thread = None

    def __enter__(self) -> ToolServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
