"""Outlets, driven with a recording ``send``: what reaches the server, and through which path."""

from __future__ import annotations

import pytest
from starlette.types import Message

from app.chat.outlets import SSE_HEADERS, HttpOutlet, SocketOutlet
from app.dialects.base import KEEPALIVE


class Sent:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


async def test_a_stream_starts_through_the_middleware_and_streams_straight_to_the_server() -> None:
    through, server = Sent(), Sent()
    outlet = HttpOutlet(through, server)
    await outlet.commit([(b"x-gateway-deployment", b"p/m")])
    await outlet.write(b"data: 1\n\n")
    await outlet.close([b"data: 2\n\n", b"data: [DONE]\n\n"])
    assert outlet.committed
    assert through.messages == [
        {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, (b"x-gateway-deployment", b"p/m")]}
    ]
    assert server.messages == [
        {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True},
        {"type": "http.response.body", "body": b"data: 2\n\ndata: [DONE]\n\n", "more_body": False},
    ]
    assert outlet.keepalive == KEEPALIVE


async def test_a_whole_response_goes_through_the_middleware() -> None:
    through, server = Sent(), Sent()
    outlet = HttpOutlet(through, server)
    await outlet.respond(429, [(b"retry-after", b"3")], b"{}")
    assert outlet.committed
    assert [m["type"] for m in through.messages] == ["http.response.start", "http.response.body"]
    assert through.messages[0]["status"] == 429
    assert through.messages[1] == {"type": "http.response.body", "body": b"{}", "more_body": False}
    assert server.messages == []


async def test_a_socket_outlet_sends_every_frame_and_has_no_status() -> None:
    frames: list[bytes] = []

    async def send(frame: bytes) -> None:
        frames.append(frame)

    outlet = SocketOutlet(send)
    assert outlet.committed  # a failure is always a frame, never a status
    assert outlet.keepalive is None  # the server's pings keep the socket alive
    await outlet.commit([(b"x", b"y")])
    await outlet.write(b"a")
    await outlet.close([b"b", b"c"])
    assert frames == [b"a", b"b", b"c"]
    with pytest.raises(RuntimeError, match="always streams"):
        await outlet.respond(200, [], b"")
