"""The relay called as an ASGI app with our own receive/send, to see each message it sends."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.types import Message

from app.chunks import ChunkEncoder
from app.middleware import AccessRecord
from app.relay import EventStreamResponse
from providers.base import Event, Finish, Start, TextDelta, UpstreamUnavailableError, Usage


class Upstream:
    def __init__(self, events: list[Event | Exception]):
        self.events = events
        self.closed = False

    async def stream(self) -> AsyncGenerator[Event, None]:
        try:
            for event in self.events:
                if isinstance(event, Exception):
                    raise event
                yield event
        finally:
            self.closed = True


async def run(events: list[Event | Exception]) -> tuple[list[Message], AccessRecord, Upstream]:
    upstream, record, sent = Upstream(events), AccessRecord(), []
    stream = upstream.stream()
    first = await anext(stream)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    encoder = ChunkEncoder("id", 1, "m", include_usage=True)
    await EventStreamResponse(first, stream, encoder, record)({"type": "http"}, receive, send)
    return sent, record, upstream


async def test_one_body_message_per_event_then_one_final_message() -> None:
    sent, record, upstream = await run([Start(), TextDelta("a"), TextDelta("b"), Usage(1, 2), Finish("stop")])
    start, *bodies, final = sent
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    assert [b["more_body"] for b in bodies] == [True] * 4  # role, a, b, finish; usage waits for the end
    assert final["more_body"] is False
    assert final["body"].endswith(b"data: [DONE]\n\n")
    assert b'"usage"' in final["body"]
    assert record.chunks == 4
    assert record.ttft_ms is not None
    assert upstream.closed


async def test_a_provider_error_is_the_final_message_and_the_upstream_is_closed() -> None:
    sent, record, upstream = await run([Start(), TextDelta("a"), UpstreamUnavailableError("gone")])
    final = sent[-1]
    assert final["more_body"] is False
    assert final["body"].startswith(b'data: {"error":')
    assert b"[DONE]" not in final["body"]
    assert record.error == "upstream_unavailable"
    assert upstream.closed


async def test_ttft_waits_for_content_not_the_role_chunk() -> None:
    _, record, _ = await run([Start(), Usage(1, 0), Finish("stop")])
    assert record.ttft_ms is None
