"""One HTTP/1.1 connection of the native transport (``providers._native``): its protocol, the
response head and body parsed by httptools as bytes arrive, and the body handed to httpx.

Backpressure: above ``HIGH_WATER`` bytes buffered the socket stops being read, and reading resumes
below ``LOW_WATER``. A head larger than ``MAX_HEAD`` is refused.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable

import httptools
import httpx

Origin = tuple[bytes, bytes, int]
HIGH_WATER = 256 * 1024  # buffered body bytes above which the socket stops being read
LOW_WATER = 64 * 1024
MAX_HEAD = 64 * 1024  # a response head larger than this is refused


def oversize_head() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"the upstream's response head is over {MAX_HEAD // 1024} KiB")


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a request written, its response parsed as it arrives."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop):
        self.origin, self.loop = origin, loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.done = False  # the whole response arrived
        self.error: Exception | None = None
        self.paused = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.idle_since = 0.0
        self.head_bytes = 0
        self.keep_alive = False
        self.header_bytes = 0
        self.asked = False  # a request was written and its response is awaited
        self.retired = False  # closed by the pool: what follows is nobody's concern
        self.absolute = False  # through a plain http proxy: requests name their absolute URL
        self.tunnel: asyncio.StreamWriter | None = None  # through a CONNECT tunnel: what holds it open

    # The protocol: bytes from the socket into the parser, and the parser's callbacks.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport, as create_connection makes

    def data_received(self, data: bytes) -> None:
        if not self.head.done() and self.head_bytes > MAX_HEAD:  # a head still coming after 64 KiB
            self.fail(oversize_head())
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - the gateway never asks for an upgrade
            self.fail(httpx.RemoteProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self.fail(httpx.RemoteProtocolError(f"the upstream's response is malformed ({exc})"))
        if not self.head.done():
            self.head_bytes += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done or self.retired:
            return
        if exc is None and self.head.done() and self.error is None and self.close_delimited():
            self.done = True  # a body with neither a length nor chunks ends where the connection does
        if not self.done:
            reason = f"the connection was lost while reading ({exc})" if exc else "the upstream closed the connection"
            self.fail(httpx.ReadError(reason) if exc else httpx.RemoteProtocolError(reason))
        self.wake()

    def close_delimited(self) -> bool:
        names = {name.lower(): value.lower() for name, value in self.headers}
        return b"content-length" not in names and b"chunked" not in names.get(b"transfer-encoding", b"")

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def on_status(self, status: bytes) -> None:
        self.status = self.parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        if self.head.done():
            return
        if self.header_bytes > MAX_HEAD:  # a whole head at once, too large
            self.error = oversize_head()
            self.head.set_exception(self.error)
            if self.transport is not None:
                self.transport.close()
            return
        self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self.wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # asked here: after the callback it says False
        self.done = True
        self.wake()

    # What the transport and the response stream use.

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        if self.asked and not self.head.done():  # an idle connection has nobody waiting for a head
            self.head.set_exception(error)
        self.wake()
        if self.transport is not None:
            self.transport.close()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next_chunk(self, read_seconds: float | None) -> bytes | None:
        """The next body bytes, None at the end; raises what broke the connection."""
        while not self.chunks:
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            try:
                async with asyncio.timeout(read_seconds):
                    await self.waiter
            except TimeoutError:
                raise httpx.ReadTimeout("the upstream sent nothing within the read timeout") from None
            finally:
                self.waiter = None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < LOW_WATER and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return (
            self.done
            and self.error is None
            and transport is not None
            and not transport.is_closing()
            and self.keep_alive
        )

    def reset(self) -> None:
        """Ready for the next request on the same connection."""
        self.head = self.loop.create_future()
        self.status, self.headers, self.done, self.head_bytes, self.keep_alive = 0, [], False, 0, False
        self.asked, self.header_bytes = False, 0
        self.chunks.clear()
        self.buffered = 0
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.retired = True
        if self.transport is not None:
            self.transport.close()


class Body(httpx.AsyncByteStream):
    """The response body as the socket delivers it; closing it early closes the connection."""

    def __init__(self, release: Callable[[Connection], None], connection: Connection, read_timeout: float | None):
        self.release, self.connection, self.read_timeout = release, connection, read_timeout
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.connection.next_chunk(self.read_timeout)) is not None:
            yield chunk

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.release(self.connection)
