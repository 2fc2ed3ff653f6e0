"""Both transports beneath httpx, against a real fake vendor on 127.0.0.1 (respx cannot fake aiohttp's)."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from providers._http import TRANSPORTS, make_client
from providers.base import (
    Deployment,
    Event,
    Finish,
    ProviderError,
    RateLimitedError,
    Start,
    StreamTruncatedError,
    TextDelta,
    UpstreamModel,
    UpstreamUnavailableError,
    Usage,
)
from providers.openai import OpenAIProvider
from providers.request import CHAT_REQUEST_DECODER
from tests.conftest import LiveServer
from tests.providers.streams import fixture, pieces

TEXT = fixture("openai_text.sse")
REQUEST = CHAT_REQUEST_DECODER.decode(b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}')
DEPLOYMENT = Deployment("openai", "gpt")


async def stream_text(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for piece in pieces(TEXT, 37):
            yield piece
            await asyncio.sleep(0.001)

    return StreamingResponse(body(), media_type="text/event-stream")


async def gzipped(request: Request) -> Response:
    return Response(gzip.compress(TEXT), media_type="text/event-stream", headers={"content-encoding": "gzip"})


async def limited(request: Request) -> Response:
    return JSONResponse({"error": {"message": "Rate limit reached"}}, status_code=429, headers={"retry-after": "3"})


async def cut_short(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield TEXT[:300]
        raise RuntimeError("the vendor died")  # uvicorn drops the connection mid-body

    return StreamingResponse(body(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def vendor() -> Iterator[LiveServer]:
    routes = [
        Route("/v1/chat/completions", stream_text, methods=["POST"]),
        Route("/gzip/chat/completions", gzipped, methods=["POST"]),
        Route("/limited/chat/completions", limited, methods=["POST"]),
        Route("/cut/chat/completions", cut_short, methods=["POST"]),
    ]
    with LiveServer(Starlette(routes=routes)) as server:
        yield server


async def events_from(transport: str, base_url: str) -> list[Event]:
    async with make_client(transport) as client:
        provider = OpenAIProvider("openai", client, base_url=base_url, api_key="k")
        return [event async for event in provider.stream(REQUEST, DEPLOYMENT)]


EXPECTED: list[Event] = [
    Start(),
    UpstreamModel("gpt-4o-2024-08-06"),
    TextDelta("I'm"),
    TextDelta(" unable \u2028 été 🙂"),
    TextDelta("."),
    Usage(14, 30, cached_tokens=4),
    Finish("stop"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", ["/v1", "/gzip"])
async def test_a_stream_over_real_sockets(vendor: LiveServer, transport: str, path: str) -> None:
    assert await events_from(transport, vendor.url + path) == EXPECTED


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_http_error_with_retry_after(vendor: LiveServer, transport: str) -> None:
    with pytest.raises(RateLimitedError, match="Rate limit reached") as info:
        await events_from(transport, vendor.url + "/limited")
    assert info.value.retry_after == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_closed_port_is_unavailable(transport: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamUnavailableError):
        await events_from(transport, f"http://127.0.0.1:{port}/v1")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_dropped_mid_answer_is_an_error_not_an_ending(vendor: LiveServer, transport: str) -> None:
    with pytest.raises((ProviderError, StreamTruncatedError)):
        await events_from(transport, vendor.url + "/cut")
