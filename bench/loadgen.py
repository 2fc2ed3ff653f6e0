"""A load generator with little overhead of its own: raw asyncio connections parsed by httptools.

Each client holds one keep-alive connection and sends its streams one after another; every client
starts at the same moment. For each stream it records when the request went out, when each token
(``"content":"x``) arrived, and whether ``[DONE]`` did.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

import httptools

MARKER = b'"content":"x'
DONE = b"data: [DONE]"
CARRY = max(len(MARKER), len(DONE)) - 1


@dataclass
class Result:
    start: float
    tokens: list[float] = field(default_factory=list)
    end: float = 0.0
    status: int = 0
    done: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.done

    @property
    def ttft(self) -> float:
        return self.tokens[0] - self.start

    @property
    def total(self) -> float:
        return self.end - self.start


class Client(asyncio.Protocol):
    """One keep-alive connection that runs one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.result: Result | None = None
        self.finished: asyncio.Future[None] | None = None
        self.carry = b""
        self.whole = False  # a non-streamed answer: done when its body is complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(f"bad response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("connection closed")

    def on_status(self, status: bytes) -> None:
        assert self.result is not None
        self.result.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        now = time.perf_counter()
        assert self.result is not None
        data = self.carry + body
        self.result.tokens.extend([now] * data.count(MARKER))
        if DONE in data:
            self.result.done = True
        self.carry = data[-CARRY:]

    def on_message_complete(self) -> None:
        assert self.result is not None
        assert self.finished is not None
        self.result.end = time.perf_counter()
        self.result.done = self.result.done or self.whole
        if not self.finished.done():
            self.finished.set_result(None)

    def fail(self, reason: str) -> None:
        if self.result is not None and self.finished is not None and not self.finished.done():
            self.result.error = reason
            self.result.end = time.perf_counter()
            self.finished.set_result(None)

    async def request(self, payload: bytes, stream_timeout: float, whole: bool = False) -> Result:
        assert self.transport is not None
        self.result, self.carry, self.whole = Result(time.perf_counter()), b"", whole
        self.finished = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        try:
            await asyncio.wait_for(asyncio.shield(self.finished), stream_timeout)
        except TimeoutError:
            self.fail(f"no complete answer within {stream_timeout:.0f} s")
        return self.result


def request_bytes(host: str, port: int, body: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (host.encode(), port, len(body), body)
    )


async def run_block(
    host: str,
    port: int,
    payload: bytes | list[bytes],
    clients: int,
    streams_each: int,
    stream_timeout: float,
    spread: float = 0.0,
    whole: bool = False,
) -> list[Result]:
    """``clients`` connections, opened first, then each sending ``streams_each`` streams in turn.

    ``payload`` is one request for every client, or one per client (each its own conversation, say).

    Client starts are spread evenly over ``spread`` seconds (one stream's length), so that the
    concurrency holds steady instead of arriving as one burst of simultaneous requests.
    """
    loop = asyncio.get_running_loop()
    connections = await asyncio.gather(*(loop.create_connection(Client, host, port) for _ in range(clients)))
    go = asyncio.Event()

    payloads = payload if isinstance(payload, list) else [payload] * clients

    async def client_loop(client: Client, delay: float, own: bytes) -> list[Result]:
        await go.wait()
        await asyncio.sleep(delay)
        return [await client.request(own, stream_timeout, whole) for _ in range(streams_each)]

    tasks = [
        asyncio.create_task(client_loop(protocol, spread * i / clients, payloads[i]))
        for i, (_, protocol) in enumerate(connections)
    ]
    go.set()
    results = [result for batch in await asyncio.gather(*tasks) for result in batch]
    for transport, _ in connections:
        transport.close()
    return results
