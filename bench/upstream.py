"""A synthetic OpenAI-style upstream that is never the bottleneck.

Raw asyncio on uvloop: requests are parsed just enough to find their end, every frame is encoded
once at start-up, and one ticker writes the next token to every active stream, so a thousand streams
cost one timer, not a thousand.

    python -m bench.upstream --port 9200 --ttft-ms 50 --delay-ms 5 --tokens 50
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import cast

import uvloop

TOKEN = b"x"  # what the load generator looks for: '"content":"x'
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
CHUNK_ID = b'"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench"'


def frame(payload: bytes) -> bytes:
    """One SSE event as one HTTP chunk."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


ROLE = frame(
    b"{" + CHUNK_ID + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
)
TOKEN_FRAME = frame(
    b"{" + CHUNK_ID + b',"choices":[{"index":0,"delta":{"content":"' + TOKEN + b' "},"finish_reason":null}]}'
)


def tail(tokens: int) -> bytes:
    finish = frame(b"{" + CHUNK_ID + b',"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
    usage = frame(
        b"{"
        + CHUNK_ID
        + b',"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}' % (tokens, tokens + 8)
    )
    return finish + usage + frame(b"[DONE]") + b"0\r\n\r\n"


@dataclass
class Shape:
    ttft: float
    delay: float
    tokens: int
    slow_every: int = 0  # every n-th stream waits ``slow_ttft`` for its first token: a tail, for hedging
    slow_ttft: float = 0.0


class Stream:
    __slots__ = ("left", "transport")

    def __init__(self, transport: asyncio.Transport, tokens: int):
        self.transport = transport
        self.left = tokens


class Upstream:
    """Holds the active streams and the one ticker that feeds them."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.tail = tail(shape.tokens)
        self.active: list[Stream] = []
        self.loop = asyncio.get_running_loop()
        self.started = 0

    def start(self, transport: asyncio.Transport) -> None:
        transport.write(HEAD)
        self.started += 1
        slow = self.shape.slow_every and self.started % self.shape.slow_every == 0
        self.loop.call_later(self.shape.slow_ttft if slow else self.shape.ttft, self.first_token, transport)

    def first_token(self, transport: asyncio.Transport) -> None:
        if transport.is_closing():
            return
        transport.write(ROLE + TOKEN_FRAME)
        stream = Stream(transport, self.shape.tokens - 1)
        if stream.left <= 0:
            transport.write(self.tail)
        else:
            self.active.append(stream)

    async def tick(self) -> None:
        """Every ``delay``, the next token to every active stream (a stream's first gap may be a tick shorter)."""
        next_at = time.monotonic()
        while True:
            next_at += self.shape.delay
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            still = []
            for stream in self.active:
                if stream.transport.is_closing():
                    continue
                stream.left -= 1
                stream.transport.write(TOKEN_FRAME if stream.left else TOKEN_FRAME + self.tail)
                if stream.left:
                    still.append(stream)
            self.active = still


class Connection(asyncio.Protocol):
    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.upstream.start(self.transport)


async def serve(host: str, port: int, shape: Shape) -> None:
    upstream = Upstream(shape)
    server = await asyncio.get_running_loop().create_server(lambda: Connection(upstream), host, port, backlog=4096)
    ticker = asyncio.create_task(upstream.tick())
    async with server:
        await server.serve_forever()
    ticker.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--delay-ms", type=float, default=5)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--slow-every", type=int, default=0, help="every n-th stream is slow to its first token")
    parser.add_argument("--slow-ttft-ms", type=float, default=1000)
    args = parser.parse_args()
    shape = Shape(args.ttft_ms / 1000, args.delay_ms / 1000, args.tokens, args.slow_every, args.slow_ttft_ms / 1000)
    uvloop.run(serve(args.host, args.port, shape))


if __name__ == "__main__":
    main()
