"""The WebSocket chat with a real client against uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.config import GatewayConfig, Reliability
from app.main import create_app
from providers.catalog import ProviderSpec
from tests.conftest import LiveServer
from tests.fake_vendor import FakeVendor
from tests.test_reliability import CLOSE_WITHIN, scenario


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(vendor: FakeVendor) -> Iterator[LiveServer]:
    config = GatewayConfig(
        reliability=Reliability(retries=0),
        providers={"openai": ProviderSpec("openai", vendor.url, "sk-fake")},
    )
    with LiveServer(create_app(config), ws_ping_interval=0.2, ws_ping_timeout=5) as live:
        yield live


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/ws/chat"


def chat(request_id: str, model: str, content: str = "hi") -> bytes:
    return orjson.dumps(
        {"type": "chat", "request_id": request_id, "model": model, "messages": [{"role": "user", "content": content}]}
    )


async def frames_until(ws: ClientConnection, done: set[str], limit: float = 10) -> list[dict[str, Any]]:
    """Frames until every request id in ``done`` has had its ``complete`` or ``error``."""
    frames: list[dict[str, Any]] = []
    ended: set[str] = set()
    async with asyncio.timeout(limit):
        while not done <= ended:
            frame = orjson.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] in ("complete", "error"):
                ended.add(frame["request_id"])
    return frames


async def test_two_chats_interleave_on_one_socket(server: LiveServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(chat("a", "synthetic:ttft_ms=0,delay_ms=20,tokens=8"))
        await ws.send(chat("b", "synthetic:ttft_ms=0,delay_ms=20,tokens=8"))
        frames = await frames_until(ws, {"a", "b"})
    order = [f["request_id"] for f in frames if f["type"] == "token"]
    assert order.count("a") == order.count("b") == 8
    assert order != sorted(order)  # interleaved, not one after the other
    statuses = [f for f in frames if f["type"] == "status"]
    assert {(f["request_id"], f["status"]) for f in statuses} == {("a", "processing"), ("b", "processing")}
    completes = {f["request_id"]: f for f in frames if f["type"] == "complete"}
    assert completes["a"]["finish_reason"] == "stop"
    assert completes["b"]["usage"]["completion_tokens"] == 8


async def test_cancel_one_while_the_other_completes(server: LiveServer, vendor: FakeVendor) -> None:
    slow = scenario("ok", tokens=1000, delay_ms=20)
    async with connect(ws_url(server)) as ws:
        await ws.send(chat("slow", f"openai/{slow}"))
        await ws.send(chat("quick", "synthetic:ttft_ms=0,delay_ms=20,tokens=10"))
        seen = 0
        while seen < 3:
            frame = orjson.loads(await ws.recv())
            seen += frame["type"] == "token" and frame["request_id"] == "slow"
        await ws.send(orjson.dumps({"type": "cancel", "request_id": "slow"}))
        cancelled = time.monotonic()
        frames = await frames_until(ws, {"quick"})
    assert vendor.closed_at(slow) - cancelled < CLOSE_WITHIN
    assert frames[-1]["type"] == "complete"
    assert frames[-1]["request_id"] == "quick"
    assert not [f for f in frames if f["request_id"] == "slow" and f["type"] == "complete"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"type":"chat"}', "missing_field"),
        (b'{"type":"dance","request_id":"x"}', "invalid_value"),
        (b'{"type":"chat","request_id":"x","model":"echo","messages":"hi"}', "invalid_type"),
        (
            b'{"type":"chat","request_id":"x","model":"nope","messages":[{"role":"user","content":"hi"}]}',
            "model_not_found",
        ),
        (b'{"type":"cancel","request_id":"ghost"}', "request_not_found"),
    ],
)
async def test_a_malformed_frame_gets_an_error_and_the_socket_stays_open(
    server: LiveServer, frame: bytes, code: str
) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(frame)
        error = orjson.loads(await ws.recv())
        assert error["type"] == "error"
        assert error["error"]["code"] == code
        assert error["error"]["message"]
        await ws.send(chat("after", "echo"))
        frames = await frames_until(ws, {"after"})
    assert frames[-1]["type"] == "complete"


async def test_a_duplicate_request_id_in_flight_is_an_error(server: LiveServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(chat("same", "synthetic:ttft_ms=200,delay_ms=10,tokens=3"))
        await ws.send(chat("same", "echo"))
        frames = [orjson.loads(await ws.recv()) for _ in range(2)]  # status, then the rejection
        while frames[-1]["type"] != "complete":
            frames.append(orjson.loads(await ws.recv()))
    errors = [f for f in frames if f["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == ["duplicate_request_id"]
    assert frames[-1]["request_id"] == "same"  # the first one still finishes


async def test_closing_the_socket_cancels_the_upstream(server: LiveServer, vendor: FakeVendor) -> None:
    slow = scenario("ok", tokens=1000, delay_ms=20)
    async with connect(ws_url(server)) as ws:
        await ws.send(chat("r", f"openai/{slow}"))
        while orjson.loads(await ws.recv())["type"] != "token":
            pass
    closed = time.monotonic()
    assert vendor.closed_at(slow) - closed < CLOSE_WITHIN


def test_the_server_pings_idle_sockets(server: LiveServer) -> None:
    """A raw WebSocket handshake, then the next frame from an idle server must be a ping (opcode 9)."""
    port = int(server.url.rsplit(":", 1)[1])
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        assert sock.recv(1)[0] & 0x0F == 0x9
