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
- ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY`` honoured (``providers._proxy``: CONNECT for https).
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
from typing import Any

import certifi
import httpx

from providers._connection import Body, Connection, Origin
from providers._proxy import Proxies, tunnel


class Pool:
    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext, proxies: Proxies):
        self.proxies = proxies
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
        proxy = self.proxies.for_origin(scheme, hostname)
        try:
            async with asyncio.timeout(connect_seconds):
                if proxy is not None and tls is not None:
                    connection.tunnel = await tunnel(connection, proxy, hostname, port, tls)
                elif proxy is not None:  # plain http: the request goes to the proxy, with its absolute URL
                    connection.absolute = True
                    await loop.create_connection(lambda: connection, *proxy)
                else:
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
    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None, proxies: Proxies | None = None):
        context = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self.pool = Pool(limits, context, proxies or Proxies())

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
            stream=Body(self.pool.release, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def send(self, connection: Connection, request: httpx.Request, write_seconds: float | None) -> None:
        transport = connection.transport
        assert transport is not None
        target = str(request.url).encode() if connection.absolute else request.url.raw_path
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), target)]
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
