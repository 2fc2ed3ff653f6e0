"""Shared fixtures: the app, an in-process client, and a real uvicorn on a free 127.0.0.1 port.

In-process transports collect whole bodies, so anything about incremental delivery or timing uses
``live_server``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from app.config import GatewayConfig
from app.main import create_app
from app.ops.tracing import TRACING
from providers.base import Provider

# Every gateway the tests start keeps conversations in a scratch SQLite file, never in the checkout's data/.
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='gateway-tests-')}/conversations.db"


def make_app(providers: Sequence[Provider] | None = None, config: GatewayConfig | None = None) -> Starlette:
    return create_app(config or GatewayConfig(), providers)


def asgi_client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Traces on for one test, each span kept in memory as it ends."""
    exporter = InMemorySpanExporter()
    TRACING.start(exporter)
    yield exporter
    TRACING.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app()) as client:
        yield client


@pytest.fixture
async def sdk() -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai SDK calling the gateway in-process, every vendor of ``test_vendors_sdk`` configured."""
    from tests.test_vendors_sdk import CONFIG, sdk_http

    http = sdk_http(create_app(CONFIG))
    async with (
        http,
        openai.AsyncOpenAI(base_url="http://gateway.test/v1", api_key="unused", http_client=http, max_retries=0) as c,
    ):
        yield c


class LiveServer:
    """uvicorn serving an app from a background thread, on a socket bound to a free port."""

    def __init__(self, app: Starlette, **uvicorn_options: Any):
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_config=None, access_log=False, loop="uvloop", http="httptools", **uvicorn_options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class LiveServers:
    """The gateways one test starts, each on its own port; all stopped when the test ends."""

    def __init__(self) -> None:
        self.running: list[LiveServer] = []

    def start(self, app: Starlette) -> LiveServer:
        server = LiveServer(app).__enter__()
        self.running.append(server)
        return server


@pytest.fixture
def live_servers() -> Iterator[LiveServers]:
    servers = LiveServers()
    yield servers
    for server in servers.running:
        server.__exit__()


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    with LiveServer(make_app()) as server:
        yield server
