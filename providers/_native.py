"""A transport of our own beneath httpx (``http.transport: native``): HTTP/1.1 on asyncio Protocols,
responses parsed by httptools, pooled keep-alive connections per origin.

- The pool keeps idle connections per origin in a stack: taking one and putting one back are O(1),
  with no scan of the pool per request; ``max_connections`` bounds the connections open at once, and
  a request that finds none free waits at most the pool timeout (``httpx.PoolTimeout``).
- The response body is handed to httpx as the socket delivers it; when the reader falls behind, the
  socket stops being read (``pause_reading``) until it catches up: backpressure, not buffering.
- Chunked, content-length and close-delimited bodies come from httptools; ``Content-Encoding`` is
  left to httpx's own decoders, as with any transport.
- TLS through the loop's ssl with certifi's trust store, SNI and hostname checks.
- Timeouts are httpx's: connect, read (the head, then each body read), write, pool; errors are httpx's
  (``ConnectError``, ``ReadError``, ``RemoteProtocolError``), so providers and their error mapping
  are unchanged.
- A response closed before its end (cancelled, abandoned) closes its connection at once; only a
  response read to its end on a keep-alive connection goes back to the pool.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import certifi
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

    def __init__(self, pool: Pool, connection: Connection, read_timeout: float | None):
        self.pool, self.connection, self.read_timeout = pool, connection, read_timeout
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.connection.next_chunk(self.read_timeout)) is not None:
            yield chunk

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.release(self.connection)


class Pool:
    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext):
        self.max_connections = limits.max_connections or 2**31
        self.max_idle = limits.max_keepalive_connections or 0
        self.keepalive_expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self.ssl_context = ssl_context
        self.idle: dict[Origin, list[Connection]] = collections.defaultdict(list)
        self.idle_count = 0
        self.open = 0
        self.slots: asyncio.Semaphore | None = None  # made in the loop that uses it

    async def acquire(self, origin: Origin, timeouts: dict[str, float | None]) -> Connection:
        stack = self.idle.get(origin)
        while stack:
            connection = stack.pop()
            self.idle_count -= 1
            if self.alive(connection):
                return connection
            self.drop(connection)
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.max_connections)
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self.slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection to the upstream was free within the pool timeout") from None
        try:
            connection = await self.connect(origin, timeouts.get("connect"))
        except BaseException:
            self.slots.release()
            raise
        self.open += 1
        return connection

    async def connect(self, origin: Origin, connect_seconds: float | None) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        connection = Connection(origin, loop)
        tls = self.ssl_context if scheme == b"https" else None
        hostname = host.decode("ascii")
        try:
            async with asyncio.timeout(connect_seconds):
                await loop.create_connection(
                    lambda: connection, hostname, port, ssl=tls, server_hostname=hostname if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {hostname}:{port} took longer than {connect_seconds:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise httpx.ConnectError(f"the TLS handshake with {hostname} failed ({exc.reason or exc})") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"could not connect to {hostname}:{port} ({exc.strerror or exc})") from exc
        return connection

    def alive(self, connection: Connection) -> bool:
        transport = connection.transport
        fresh = time.monotonic() - connection.idle_since < self.keepalive_expiry
        return fresh and transport is not None and not transport.is_closing()

    def release(self, connection: Connection) -> None:
        """A response is done with its connection: back to the pool if it was read to its end, else closed."""
        if connection.reusable and self.idle_count < self.max_idle:
            connection.reset()
            self.idle[connection.origin].append(connection)
            self.idle_count += 1
            return
        self.drop(connection)

    def drop(self, connection: Connection) -> None:
        if connection.head.done() and not connection.head.cancelled():
            connection.head.exception()  # retrieved: a connection lost while idle failed its next head
        connection.close()
        self.open -= 1
        if self.slots is not None:
            self.slots.release()

    async def aclose(self) -> None:
        for stack in self.idle.values():
            for connection in stack:
                connection.close()
        self.idle.clear()
        self.idle_count = 0


class NativeTransport(httpx.AsyncBaseTransport):
    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None):
        context = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self.pool = Pool(limits, context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme, host = url.raw_scheme, url.raw_host
        port = url.port or (443 if scheme == b"https" else 80)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        connection = await self.pool.acquire((scheme, host, port), timeouts)
        if connection.error is not None:  # lost while idle, between the pool's check and now
            self.pool.drop(connection)
            connection = await self.pool.acquire((scheme, host, port), timeouts)
        connection.asked = True
        try:
            await self.send(connection, request, timeouts.get("write"))
            try:
                async with asyncio.timeout(timeouts.get("read")):
                    await connection.head
            except TimeoutError:
                raise httpx.ReadTimeout("the upstream sent no response head within the read timeout") from None
        except BaseException:
            connection.error = connection.error or httpx.ReadError("the request was abandoned")
            self.pool.drop(connection)
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=Body(self.pool, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def send(self, connection: Connection, request: httpx.Request, write_seconds: float | None) -> None:
        transport = connection.transport
        assert transport is not None
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
        head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        transport.write(b"".join([*head, b"\r\n"]))
        async for part in request.stream:  # type: ignore[union-attr]  # an httpx request's stream is async here
            if part:
                transport.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await self.drained(connection, write_seconds)
        if chunked:
            transport.write(b"0\r\n\r\n")
        await self.drained(connection, write_seconds)

    async def drained(self, connection: Connection, write_seconds: float | None) -> None:
        if connection.writable.is_set():
            return
        try:
            async with asyncio.timeout(write_seconds):
                await connection.writable.wait()
        except TimeoutError:
            raise httpx.WriteTimeout("the upstream took no more of the request within the write timeout") from None

    async def aclose(self) -> None:
        await self.pool.aclose()
