"""Helpers for vendor tests: fixtures, mappers fed in awkward pieces, and respx-faked upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from providers._http import StreamMapper
from providers.base import Event
from providers.request import CHAT_REQUEST_DECODER, ChatRequest

FIXTURES = Path(__file__).parent / "fixtures"
AWKWARD_SIZES = (1, 2, 3, 5, 7, 13, 64, 1000)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(body: bytes) -> ChatRequest:
    """A chat request as a client sends it, from its JSON."""
    return CHAT_REQUEST_DECODER.decode(body)


def run(make: Callable[[], StreamMapper], chunks: list[bytes]) -> list[Event]:
    mapper = make()
    events = [event for chunk in chunks for event in mapper.feed(chunk)]
    return events + mapper.end()


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def assert_same_in_any_pieces(make: Callable[[], StreamMapper], data: bytes, expected: list[Event]) -> None:
    """The same events whatever the reads: whole, every split point, and awkward chunk sizes."""
    assert run(make, [data]) == expected
    for size in AWKWARD_SIZES:
        assert run(make, pieces(data, size)) == expected, size
    for at in range(len(data) + 1):
        assert run(make, [data[:at], data[at:]]) == expected, at


def streamed(
    data: bytes, size: int = 7, content_type: str = "text/event-stream"
) -> Callable[[httpx.Request], httpx.Response]:
    """A respx side effect answering 200 with ``data`` delivered ``size`` bytes per read."""

    def respond(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for piece in pieces(data, size):
                yield piece

        return httpx.Response(200, content=body(), headers={"content-type": content_type})

    return respond
