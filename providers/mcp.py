"""A hand-written client for MCP servers over the streamable HTTP transport.

Every JSON-RPC message is a POST to the server's one URL, sent with ``Accept: application/json,
text/event-stream``; the server answers with one JSON body or an SSE stream that carries the answer
(and perhaps notifications first). A session starts with ``initialize`` and
``notifications/initialized``; the server's ``Mcp-Session-Id`` and the agreed protocol version go
with every later request. A 404 to a request carrying a session id means the server forgot the
session (it restarted): the client starts a new one and sends the request once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import httpx
import msgspec

from providers._errors import timed_out
from providers._sse import SSEDecoder

PROTOCOL_VERSION = "2025-11-25"  # the newest revision reachable through the initialize handshake
CLIENT_INFO = {"name": "llm-gateway", "version": "0.1.0"}
MAX_PAGES = 100  # tools/list pages followed before giving up on a server that never stops paging
MAX_BODY = 16 * 1024 * 1024


class McpServerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    headers: dict[str, str] = {}  # sent with every request (Authorization, ...); ${VAR} works in config
    timeout: float = 30.0  # for each request, a tool call included


class McpError(Exception):
    """The server could not be reached, refused the request, or answered with a JSON-RPC error."""


class McpTool(msgspec.Struct, frozen=True):
    server: str
    name: str
    description: str | None
    input_schema: dict[str, Any]


class ToolOutcome(msgspec.Struct, frozen=True):
    """A tool's answer as text for the model; ``is_error`` when the tool (or the call) failed."""

    text: str
    is_error: bool


class RpcReply(msgspec.Struct):
    id: int | str | None = None
    result: Any = None
    error: Any = None
    method: str | None = None


REPLY_DECODER = msgspec.json.Decoder(RpcReply)
ENCODER = msgspec.json.Encoder()


class McpClient:
    def __init__(self, name: str, spec: McpServerSpec, client: httpx.AsyncClient):
        self.name = name
        self.spec = spec
        self.client = client
        self.session_id: str | None = None
        self.protocol_version = PROTOCOL_VERSION
        self.ids = itertools.count(1)
        self.initializing: asyncio.Lock | None = None
        self.notices: set[asyncio.Task[None]] = set()  # cancellation notices on their way to the server

    async def list_tools(self) -> list[McpTool]:
        """Every tool, following ``nextCursor`` page by page."""
        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            result = await self.request("tools/list", {"cursor": cursor} if cursor else {})
            for tool in result.get("tools") or []:
                schema = tool.get("inputSchema") or {"type": "object", "properties": {}}
                tools.append(McpTool(self.name, tool["name"], tool.get("description"), schema))
            cursor = result.get("nextCursor")
            if not cursor:
                return tools
        raise McpError(f"MCP server {self.name} kept paging tools/list past {MAX_PAGES} pages.")

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """The tool's text content; a tool that failed is an outcome too, for the model to read."""
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        parts = [part.get("text", "") for part in result.get("content") or [] if part.get("type") == "text"]
        text = "\n".join(parts)
        if not text and result.get("structuredContent") is not None:
            text = ENCODER.encode(result["structuredContent"]).decode()
        return ToolOutcome(text, bool(result.get("isError")))

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        """One JSON-RPC request in this session, starting (or restarting) the session when needed."""
        if self.session_id is None and method != "initialize":
            await self.start_session()
        message_id = next(self.ids)
        try:
            return await self.exchange(method, params, message_id)
        except SessionLostError:
            await self.start_session()
            return await self.exchange(method, params, next(self.ids))
        except asyncio.CancelledError:
            if method == "tools/call":  # tell the server, so the tool stops too
                notice = asyncio.ensure_future(
                    self.notify_quietly("notifications/cancelled", {"requestId": message_id})
                )
                self.notices.add(notice)
                notice.add_done_callback(self.notices.discard)
            raise

    async def start_session(self) -> None:
        if self.initializing is None:
            self.initializing = asyncio.Lock()
        session = self.session_id
        async with self.initializing:
            if self.session_id != session and self.session_id is not None:
                return  # another request started a new session meanwhile
            self.session_id = None
            params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
            result = await self.exchange("initialize", params, next(self.ids))
            self.protocol_version = str(result.get("protocolVersion") or PROTOCOL_VERSION)
            await self.notify("notifications/initialized", {})

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        response = await self.post({"jsonrpc": "2.0", "method": method, "params": params})
        await response.aclose()

    async def notify_quietly(self, method: str, params: dict[str, Any]) -> None:
        with contextlib.suppress(McpError, TimeoutError):
            await asyncio.wait_for(self.notify(method, params), 5)

    async def exchange(self, method: str, params: dict[str, Any], message_id: int) -> Any:
        message = {"jsonrpc": "2.0", "id": message_id, "method": method, "params": params}
        response = await self.post(message)
        try:
            if method == "initialize" and "mcp-session-id" in response.headers:
                self.session_id = response.headers["mcp-session-id"]
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                reply = await self.reply_from_stream(response, message_id)
            else:
                reply = REPLY_DECODER.decode(await read_limited(response))
        except (msgspec.DecodeError, httpx.HTTPError) as exc:
            raise McpError(f"MCP server {self.name} sent an answer to {method} that is not JSON-RPC: {exc}") from exc
        finally:
            await response.aclose()
        if reply.error is not None:
            error = reply.error if isinstance(reply.error, dict) else {}
            raise McpError(f"MCP server {self.name} refused {method}: {error.get('message', reply.error)}")
        return reply.result if isinstance(reply.result, dict) else {}

    async def post(self, message: dict[str, Any]) -> httpx.Response:
        headers = {
            **self.spec.headers,
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
            headers["mcp-protocol-version"] = self.protocol_version
        body = ENCODER.encode(message)
        for attempt in (1, 2):
            request = httpx.Request("POST", self.spec.url, headers=headers, content=body)
            request.extensions["timeout"] = httpx.Timeout(self.spec.timeout).as_dict()
            try:
                response = await self.client.send(request, stream=True)
                break
            except httpx.HTTPError as exc:
                if timed_out(exc):
                    raise McpError(f"MCP server {self.name} at {self.spec.url} did not answer in time.") from exc
                # A pooled connection the server closed (it restarted, say) fails before any answer: once more.
                if attempt == 1:
                    continue
                reason = exc.__cause__ or exc or type(exc).__name__
                raise McpError(f"MCP server {self.name} at {self.spec.url} cannot be reached: {reason}.") from exc
        if response.status_code == 404 and self.session_id is not None:
            await response.aclose()
            raise SessionLostError
        if response.status_code >= 400:
            await response.aclose()
            raise McpError(f"MCP server {self.name} answered HTTP {response.status_code} to {message['method']}.")
        return response

    async def reply_from_stream(self, response: httpx.Response, message_id: int) -> RpcReply:
        """The answer to ``message_id`` among the stream's messages; notifications before it are skipped."""
        decoder = SSEDecoder()
        async for chunk in response.aiter_raw():
            for event in decoder.feed(chunk):
                if not event.data:
                    continue
                reply = REPLY_DECODER.decode(event.data)
                if reply.id == message_id and reply.method is None:
                    return reply
        raise McpError(f"MCP server {self.name} ended its stream without answering request {message_id}.")


class SessionLostError(Exception):
    """The server answered 404 to our session id: it forgot the session."""


async def read_limited(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_BODY:
            raise McpError(f"An MCP answer was larger than {MAX_BODY} bytes.")
    return bytes(body)
