"""Where an exchange's answer goes: the outlet interface, an HTTP response, or one chat on a WebSocket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.types import Send

from app.dialects.base import KEEPALIVE

SERVER_SEND_KEY = "gateway.server_send"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
Headers = list[tuple[bytes, bytes]]


class Outlet(Protocol):
    """Where an answer goes: frames of a stream, or one response."""

    committed: bool  # the status is sent: from now on a failure is an error frame, not an error status
    keepalive: bytes | None  # what to send while the upstream is silent; None when the transport pings

    async def commit(self, headers: Headers) -> None: ...

    async def write(self, frame: bytes) -> None: ...

    async def close(self, frames: list[bytes]) -> None: ...

    async def respond(self, status: int, headers: Headers, body: bytes) -> None: ...


class HttpOutlet:
    """An HTTP response. The start goes through every middleware; stream frames straight to the server."""

    def __init__(self, send: Send, server_send: Send, keepalive: bytes = KEEPALIVE):
        self.send, self.server_send = send, server_send
        self.keepalive: bytes | None = keepalive  # the dialect's: an SSE comment, or Anthropic's ping event
        self.committed = False

    async def commit(self, headers: Headers) -> None:
        self.committed = True
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})

    async def write(self, frame: bytes) -> None:
        await self.server_send({"type": "http.response.body", "body": frame, "more_body": True})

    async def close(self, frames: list[bytes]) -> None:
        await self.server_send({"type": "http.response.body", "body": b"".join(frames), "more_body": False})

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        self.committed = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class SocketOutlet:
    """One chat's frames on a shared WebSocket; there is no status to commit, errors are frames."""

    committed = True
    keepalive: bytes | None = None  # the server's WebSocket pings keep the socket alive

    def __init__(self, send: Callable[[bytes], Awaitable[None]]):
        self.send = send

    async def commit(self, headers: Headers) -> None:
        return None

    async def write(self, frame: bytes) -> None:
        await self.send(frame)

    async def close(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self.send(frame)

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        raise RuntimeError("a WebSocket chat always streams")
