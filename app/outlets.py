"""Where an exchange's answer goes, and in what shape: the outlet and encoder interfaces, and the
HTTP outlet. The WebSocket outlet lives with the WebSocket (``app.websocket``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.types import Send

from app.completion import CompletionBuilder
from app.errors import ApiError
from app.native import Summary
from providers.base import Event, FinishReason, Usage

SERVER_SEND_KEY = "gateway.server_send"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": keep-alive\n\n"


class StreamEncoder(Protocol):
    @property
    def finished(self) -> bool: ...

    @property
    def usage(self) -> Usage | None: ...

    @property
    def finish(self) -> FinishReason | None: ...

    def opening(self) -> bytes | None: ...

    def encode(self, event: Event) -> bytes | None: ...

    def end(self, summary: Summary) -> list[bytes]: ...

    def error(self, error: ApiError, request_id: str) -> bytes: ...


WholeAnswer = Callable[[CompletionBuilder, Summary], bytes]


class Outlet(Protocol):
    """Where an answer goes: frames of a stream, or one response."""

    committed: bool
    keepalive: bytes | None

    async def commit(self, headers: list[tuple[bytes, bytes]]) -> None: ...

    async def write(self, frame: bytes) -> None: ...

    async def close(self, frames: list[bytes]) -> None: ...

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None: ...


class HttpOutlet:
    """An HTTP response. The start goes through every middleware; stream frames straight to the server."""

    keepalive: bytes | None = KEEPALIVE

    def __init__(self, send: Send, server_send: Send):
        self.send, self.server_send = send, server_send
        self.committed = False

    async def commit(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.committed = True
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})

    async def write(self, frame: bytes) -> None:
        await self.server_send({"type": "http.response.body", "body": frame, "more_body": True})

    async def close(self, frames: list[bytes]) -> None:
        await self.server_send({"type": "http.response.body", "body": b"".join(frames), "more_body": False})

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.committed = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})
