"""The native transport against real servers on 127.0.0.1: scripted raw HTTP/1.1 responses."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trustme

from providers._connection import HIGH_WATER
from providers._native import NativeTransport
from providers._proxy import Proxies, ProxyConfigError

LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=30)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"7\r\ndata: a\r\n"
    b"10\r\ndata: bcdefghijk\r\n"
    b"0\r\n\r\n"
)
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


class Server:
    """Answers each request with what ``script`` writes; counts connections and when each closed."""

    def __init__(self, script: Script):
        self.script = script
        self.connections = 0
        self.closed_at: list[float] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.changed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while await read_request(reader):
                if await self.script(reader, writer) is False:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed_at.append(time.monotonic())
            self.changed.set()
            writer.close()

    async def wait_closed(self, count: int, within: float = 2.0) -> float:
        async with asyncio.timeout(within):
            while len(self.closed_at) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.closed_at[count - 1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    return head + (await reader.readexactly(length) if length else b"")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Any]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> tuple[Server, str]:
        state = Server(script)
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
        servers.append(server)
        return state, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


def client(**limits: Any) -> httpx.AsyncClient:
    transport = NativeTransport(httpx.Limits(**{**LIMITS.__dict__, **limits}) if limits else LIMITS)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0))


def answering(raw: bytes) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return script


async def test_keep_alive_reuses_one_connection(serve: Any) -> None:
    server, url = await serve(answering(CHUNKED))
    async with client() as http:
        bodies = [(await http.post(f"{url}/x", content=b'{"n":%d}' % n)).content for n in range(5)]
    assert bodies == [b"data: a" + b"data: bcdefghijk"] * 5
    assert server.connections == 1


@pytest.mark.parametrize("at", range(1, len(CHUNKED)))
async def test_a_response_split_at_any_byte_reads_the_same(serve: Any, at: int) -> None:
    async def split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED[:at])
        await writer.drain()
        await asyncio.sleep(0.001)
        writer.write(CHUNKED[at:])
        await writer.drain()

    _, url = await serve(split)
    async with client() as http:
        response = await http.get(f"{url}/x")
    assert response.headers["content-type"] == "text/event-stream"
    assert response.content == b"data: adata: bcdefghijk"


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", b"hello"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n", b"hello"),
    ],
    ids=["content-length", "chunked-with-trailers"],
)
async def test_bodies_by_length_and_by_chunks(serve: Any, raw: bytes, body: bytes) -> None:
    server, url = await serve(answering(raw))
    async with client() as http:
        assert (await http.get(f"{url}/x")).content == body
        assert (await http.get(f"{url}/x")).content == body
    assert server.connections == 1  # both kept alive


async def test_a_close_delimited_body_ends_with_the_connection(serve: Any) -> None:
    async def close_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        return False  # the server closes

    server, url = await serve(close_after)
    async with client() as http:
        assert (await http.get(f"{url}/x")).content == b"until the end"
        assert (await http.get(f"{url}/x")).content == b"until the end"
    assert server.connections == 2  # never reused


async def test_a_server_that_closes_after_a_response_gets_a_new_connection(serve: Any) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return False

    server, url = await serve(once)
    async with client() as http:
        for _ in range(3):
            assert (await http.get(f"{url}/x")).content == b"ok"
    assert server.connections == 3


async def test_a_reset_mid_body_is_a_read_error(serve: Any) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()
        return False

    _, url = await serve(reset)
    chunks: list[bytes] = []

    async def read_all(response: httpx.Response) -> None:
        async for chunk in response.aiter_raw():
            chunks.append(chunk)

    async with client() as http, http.stream("GET", f"{url}/x") as response:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await read_all(response)
    assert b"".join(chunks) == b"hello"


async def test_an_oversize_head_is_refused(serve: Any) -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"y" * 70_000 + b"\r\ncontent-length: 0\r\n\r\n"
    _, url = await serve(answering(huge))
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="head is over"):
            await http.get(f"{url}/x")


async def test_a_slow_reader_stops_the_socket_being_read(serve: Any) -> None:
    sent = [0]
    piece = b"x" * 65536

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(piece) * 400))
        for _ in range(400):
            writer.write(piece)
            await writer.drain()  # blocks while the client does not read
            sent[0] += len(piece)
        return False

    _, url = await serve(flood)
    async with client() as http, http.stream("GET", f"{url}/x") as response:
        stream = response.aiter_raw()
        await stream.__anext__()
        await asyncio.sleep(0.3)  # a slow consumer
        held = sent[0]
        assert held < 400 * len(piece) // 2  # the server is held back, not the gateway's memory filled
        received = len(b"".join([chunk async for chunk in stream]))
    assert held > HIGH_WATER  # it did buffer up to its high-water mark first
    assert received + 65536 >= len(piece) * 400 - 65536


async def test_timeouts_are_httpx_timeouts(serve: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    _, url = await serve(silent)
    transport = NativeTransport(httpx.Limits(max_connections=1, max_keepalive_connections=1))
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, read=0.2, pool=0.2)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{url}/x")


async def test_pool_timeout_when_every_connection_is_busy(serve: Any) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
        await writer.drain()
        await asyncio.sleep(5)

    _, url = await serve(slow)
    transport = NativeTransport(httpx.Limits(max_connections=1, max_keepalive_connections=1))
    timeout = httpx.Timeout(5.0, pool=0.2)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as http, http.stream("GET", f"{url}/x"):
        with pytest.raises(httpx.PoolTimeout):
            await http.get(f"{url}/y")


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        async with client() as http:
            with pytest.raises(httpx.ConnectError, match="could not connect"):
                await http.get(f"http://127.0.0.1:{port}/x")


async def test_a_cancelled_stream_closes_its_connection_at_once(serve: Any) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.005)

    server, url = await serve(endless)
    started = asyncio.Event()

    async def consume(http: httpx.AsyncClient) -> None:
        async with http.stream("GET", f"{url}/x") as response:
            async for _ in response.aiter_raw():
                started.set()

    async with client() as http:
        task = asyncio.ensure_future(consume(http))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        cancelled = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        closed = await server.wait_closed(1)
    assert closed - cancelled < 0.1


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


async def tls_server(authority: trustme.CA, name: str) -> tuple[asyncio.Server, int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


def trusting(authority: trustme.CA) -> httpx.AsyncClient:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return httpx.AsyncClient(transport=NativeTransport(LIMITS, context), timeout=httpx.Timeout(5.0))


async def test_tls_to_a_server_whose_certificate_the_trust_store_holds(authority: trustme.CA) -> None:
    server, port = await tls_server(authority, "localhost")
    try:
        async with trusting(authority) as http:
            response = await http.get(f"https://localhost:{port}/x")
        assert response.content == b"secret"
    finally:
        server.close()


@pytest.mark.parametrize("case", ["untrusted", "wrong name"])
async def test_tls_refuses_an_untrusted_or_misnamed_certificate(authority: trustme.CA, case: str) -> None:
    server, port = await tls_server(authority, "localhost" if case == "untrusted" else "elsewhere.test")
    try:
        http = client() if case == "untrusted" else trusting(authority)  # certifi's store, or ours
        async with http:
            with pytest.raises(httpx.ConnectError, match="TLS handshake with localhost failed"):
                await http.get(f"https://localhost:{port}/x")
    finally:
        server.close()


async def test_a_connect_that_hangs_is_a_connect_timeout() -> None:
    # A listening socket whose backlog is full and that never accepts: the next handshake hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers: list[socket.socket] = []
        try:
            while len(fillers) < 8:  # until the kernel queues no more
                try:
                    fillers.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
                except TimeoutError:
                    break
            transport = NativeTransport(LIMITS)
            async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, connect=0.3)) as http:
                with pytest.raises(httpx.ConnectTimeout, match=r"took longer than 0\.3 s"):
                    await http.get(f"http://127.0.0.1:{port}/x")
        finally:
            for filler in fillers:
                filler.close()


class ForwardProxy:
    """A small proxy on 127.0.0.1: CONNECT tunnels, and plain requests by their absolute URL."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []  # each request line it was sent

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0]
        self.seen.append(line)
        method, target, _ = line.split(b" ")
        if method == b"CONNECT":
            host, _, port = target.decode().rpartition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = httpx.URL(target.decode())
            upstream_reader, upstream_writer = await asyncio.open_connection(url.host, url.port)
            upstream_writer.write(head)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[ForwardProxy, str]]:
    state = ForwardProxy()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    yield state, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()


async def test_https_goes_through_a_connect_tunnel(authority: trustme.CA, proxy: tuple[ForwardProxy, str]) -> None:
    state, address = proxy
    server, port = await tls_server(authority, "localhost")
    context = ssl.create_default_context()
    authority.configure_trust(context)
    transport = NativeTransport(LIMITS, context, Proxies({"HTTPS_PROXY": address}))
    try:
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0)) as http:
            response = await http.get(f"https://localhost:{port}/x")
    finally:
        server.close()
    assert response.content == b"secret"  # TLS to the upstream itself, inside the tunnel
    assert state.seen == [b"CONNECT localhost:%d HTTP/1.1" % port]


async def test_http_goes_to_the_proxy_with_its_absolute_url_unless_no_proxy_says(
    serve: Any, proxy: tuple[ForwardProxy, str]
) -> None:
    state, address = proxy
    _, url = await serve(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
    for environ, through in (
        ({"HTTP_PROXY": address}, True),
        ({"http_proxy": address, "NO_PROXY": "127.0.0.1"}, False),
    ):
        transport = NativeTransport(LIMITS, proxies=Proxies(environ))
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0)) as http:
            assert (await http.get(f"{url}/x?q=1")).content == b"ok"
        assert (state.seen == [f"GET {url}/x?q=1 HTTP/1.1".encode()]) is through
        state.seen.clear()


def test_a_proxy_it_cannot_use_stops_start_up_with_a_message() -> None:
    with pytest.raises(ProxyConfigError, match="plain http:// proxies only"):
        Proxies({"HTTPS_PROXY": "socks5://127.0.0.1:1080"})


async def test_a_proxy_that_refuses_the_tunnel_is_a_proxy_error(authority: trustme.CA) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    address = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with httpx.AsyncClient(
            transport=NativeTransport(LIMITS, proxies=Proxies({"HTTPS_PROXY": address}))
        ) as http:
            with pytest.raises(httpx.ProxyError, match=r"refused a tunnel to example\.test:443"):
                await http.get("https://example.test/x")
    finally:
        server.close()
