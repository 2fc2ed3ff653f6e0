"""A fake vendor on 127.0.0.1 that misbehaves on request, and records when its connections close.

It speaks OpenAI's Chat Completions, and Anthropic's Messages on ``POST /v1/messages``.

It runs raw asyncio in its own thread and loop, so the tests' loop and the gateway cannot slow it.
The behaviour comes from the model name the gateway forwards, as ``name:key=value,...``:

    ok (tokens, delay_ms, ttft_ms, headers_ms)   a normal answer, optionally slow to start
    echo_auth                                     a 401 whose message repeats the Authorization header
    stall (tokens)                                some tokens, then silence with the connection open
    reset (tokens)                                some tokens, then a TCP reset
    truncate (tokens)                             some tokens, then a clean end without a finish or [DONE]
    no_done (tokens)                              a whole answer and its usage, then a clean end without [DONE]
    keepalives                                    headers, then only ": keep-alive" comments, forever
    endless (delay_ms)                            tokens forever
    status (code, times, retry_after)             ``code`` for the first ``times`` requests, then ok
    too_long (style)                              a 400 saying the prompt does not fit: openai, anthropic, vllm
    garbage / html / wrong_type / huge_line       hostile bodies
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import defaultdict
from typing import cast

import msgspec

CHUNK = b'{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1,"model":"fake","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'


def event(payload: bytes) -> bytes:
    data = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


ROLE = event(CHUNK % (b'{"role":"assistant","content":""}', b"null"))
TOKEN = event(CHUNK % (b'{"content":"tok "}', b"null"))
FINISH = event(CHUNK % (b"{}", b'"stop"')) + event(b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}')
DONE = event(b"[DONE]") + b"0\r\n\r\n"


def anthropic_event(name: bytes, payload: bytes) -> bytes:
    data = b"event: %s\ndata: %s\n\n" % (name, payload)
    return b"%x\r\n%s\r\n" % (len(data), data)


MESSAGE_START = b'{"type":"message_start","message":{"id":"msg_fake","type":"message","role":"assistant","model":"fake","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"cache_read_input_tokens":7,"output_tokens":1}}}'
ANTHROPIC_ROLE = anthropic_event(b"message_start", MESSAGE_START) + anthropic_event(
    b"content_block_start", b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
)
ANTHROPIC_TOKEN = anthropic_event(
    b"content_block_delta", b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok "}}'
)
ANTHROPIC_FINISH = (
    anthropic_event(b"content_block_stop", b'{"type":"content_block_stop","index":0}')
    + anthropic_event(
        b"message_delta",
        b'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}',
    )
    + anthropic_event(b"message_stop", b'{"type":"message_stop"}')
    + b"0\r\n\r\n"
)
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class Model(msgspec.Struct):
    model: str


def parse(model: str) -> tuple[str, dict[str, str]]:
    name, _, options = model.partition(":")
    return name, dict(item.split("=", 1) for item in options.split(",") if "=" in item)


class Connection(asyncio.Protocol):
    def __init__(self, vendor: FakeVendor):
        self.vendor = vendor
        self.buffer = b""
        self.model = ""
        self.frames = (ROLE, TOKEN, FINISH + DONE)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.vendor.open.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.vendor.closed[self.model].append(time.monotonic())
        self.vendor.open.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        at = head.find(b"authorization:")
        self.authorization = head[at + 14 :].split(b"\r\n", 1)[0].strip() if at >= 0 else b""
        body, self.buffer = self.buffer[end + 4 : end + 4 + length], self.buffer[end + 4 + length :]
        self.model = msgspec.json.decode(body, type=Model).model
        self.vendor.requests[self.model] += 1
        self.vendor.bodies[self.model].append(body)
        self.vendor.heads[self.model].append(head)
        if head.startswith(b"post /v1/messages "):
            self.frames = (ANTHROPIC_ROLE, ANTHROPIC_TOKEN, ANTHROPIC_FINISH)
        self.task = asyncio.ensure_future(self.answer(*parse(self.model)))

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def answer(self, name: str, options: dict[str, str]) -> None:
        def number(key: str, default: float) -> float:
            return float(options.get(key, default))

        if name == "status" and self.vendor.requests[self.model] <= number("times", 1):
            await self.status(int(number("code", 503)), options.get("retry_after"))
            return
        if name == "too_long":
            body = TOO_LONG[options.get("style", "openai")]
            self.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            return
        if name == "echo_auth":  # as OpenAI does, repeating (part of) the key it refused
            body = b'{"error":{"message":"Incorrect API key provided: %s"}}' % self.authorization
            self.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            return
        if name in HOSTILE:
            self.write(HOSTILE[name])
            self.transport.close()
            return
        await asyncio.sleep(number("headers_ms", 0) / 1000)
        self.write(SSE_HEAD)
        if name == "keepalives":
            while not self.transport.is_closing():
                self.write(b"e\r\n: keep-alive\n\n\r\n")
                await asyncio.sleep(0.02)
            return
        await asyncio.sleep(number("ttft_ms", 0) / 1000)
        role, token, _ = self.frames
        self.write(role)
        tokens = int(number("tokens", 3)) if name != "endless" else 10**9
        for _ in range(tokens):
            if self.transport.is_closing():
                return
            self.write(token)
            await asyncio.sleep(number("delay_ms", 5) / 1000)
        await self.end(name)

    async def end(self, name: str) -> None:
        if name == "stall":
            await asyncio.sleep(3600)
        elif name == "reset":
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()
        elif name == "truncate":
            self.write(b"0\r\n\r\n")
            self.transport.close()
        elif name == "no_done":  # as several OpenAI-compatible servers end a whole answer
            self.write(FINISH + b"0\r\n\r\n")
            self.transport.close()
        else:
            self.write(self.frames[2])

    async def status(self, code: int, retry_after: str | None) -> None:
        body = b'{"error":{"message":"fake failure %d"}}' % code
        extra = b"retry-after: %s\r\n" % retry_after.encode() if retry_after else b""
        self.write(
            b"HTTP/1.1 %d Fake\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
            % (code, extra, len(body), body)
        )


TOO_LONG = {  # each vendor's way of saying the prompt does not fit
    "openai": b'{"error":{"message":"This model\'s maximum context length is 128000 tokens.","type":"invalid_request_error",'
    b'"param":"messages","code":"context_length_exceeded"}}',
    "anthropic": b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens '
    b'> 200000 maximum"}}',
    "vllm": b'{"object":"error","message":"This model\'s maximum context length is 8192 tokens. However, you requested '
    b'9000 tokens.","type":"BadRequestError","code":400}',
}
HOSTILE = {
    "html": b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 44\r\n\r\n<html><body>502 Bad Gateway</body></html>\n\n\n",
    "wrong_type": b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 21\r\n\r\n<html>welcome!</html>",
    "garbage": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + os.urandom(4096),
    "huge_line": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: " + b"x" * (40 * 1024 * 1024),
}


class FakeVendor:
    """Serves from a background thread; ``closed[model]`` holds when each connection that served it closed."""

    def __init__(self) -> None:
        self.requests: defaultdict[str, int] = defaultdict(int)
        self.bodies: defaultdict[str, list[bytes]] = defaultdict(list)  # each request's JSON, by model
        self.heads: defaultdict[str, list[bytes]] = defaultdict(list)  # its request line and headers, lowercased
        self.closed: defaultdict[str, list[float]] = defaultdict(list)
        self.open: set[asyncio.Transport] = set()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(lambda: Connection(self), "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        for transport in list(self.open):
            transport.abort()
        server.close()
        self.loop.run_until_complete(server.wait_closed())
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0.01))
        self.loop.close()

    def __enter__(self) -> FakeVendor:
        self.thread.start()
        self.ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def wait_for_request(self, model: str, timeout: float = 5.0, count: int = 1) -> int:
        """How many requests for ``model`` arrived, once ``count`` have, or after ``timeout``. A request
        the gateway gave up on (a first-token timeout) may reach this thread after the gateway answered."""
        deadline = time.monotonic() + timeout
        while self.requests[model] < count and time.monotonic() < deadline:
            time.sleep(0.002)
        assert self.requests[model], f"the vendor never got a request for {model}"
        return self.requests[model]

    def closed_at(self, model: str, timeout: float = 5.0) -> float:
        """When the connection that served ``model`` closed, waiting for it up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.closed[model] and time.monotonic() < deadline:
            time.sleep(0.002)
        assert self.closed[model], f"the vendor's connection for {model} never closed"
        return self.closed[model][0]
