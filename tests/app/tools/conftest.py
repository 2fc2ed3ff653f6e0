"""Fixtures for the tool loop's tests: a real MCP server, respx for the vendors, gateway clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import respx

from app.config import GatewayConfig
from app.main import create_app
from tests.conftest import asgi_client
from tests.mcp_server import ToolServer


@pytest.fixture(scope="module")
def tool_server() -> Iterator[ToolServer]:
    with ToolServer() as server:
        yield server


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        yield router


@pytest.fixture
async def client_for(tool_server: ToolServer) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    apps = []

    def make(gateway_config: GatewayConfig) -> httpx.AsyncClient:
        app = create_app(gateway_config)
        apps.append(app)
        client = asgi_client(app)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    for app in apps:
        await app.state.conversations.close()
