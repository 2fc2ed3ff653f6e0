"""The streaming response: relays canonical events to the client as SSE, one body message per event.

The status is committed before this runs (the provider has yielded ``Start``); from here on a failure
can only be an error event in the stream, never a clean ending.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import structlog
from starlette.types import Receive, Scope, Send

from app.chunks import ChunkEncoder
from app.errors import REQUEST_ID_KEY, ApiError
from app.middleware import AccessRecord
from providers.base import CONTENT_EVENTS, Event, ProviderError, StreamTruncatedError

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
SERVER_SEND_KEY = "gateway.server_send"
log = structlog.get_logger("gateway")


class EventStreamResponse:
    def __init__(self, first: Event, events: AsyncGenerator[Event, None], encoder: ChunkEncoder, record: AccessRecord):
        self.first = first
        self.events = events
        self.encoder = encoder
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        # Every middleware has seen the start; the chunks go straight to the server (see GatewayApp).
        send = scope.get(SERVER_SEND_KEY, send)
        self.record.streamed = True
        try:
            tail = await self.relay(send)
        except ProviderError as exc:
            tail = self.fail(ApiError.from_provider(exc), scope)
        except Exception:
            log.exception("stream_failed", chunks=self.record.chunks)
            tail = self.fail(internal_stream_error(), scope)
        finally:
            await self.events.aclose()
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def relay(self, send: Send) -> bytes:
        """Send every event as it arrives; return the stream's last frame."""
        await self.send_event(send, self.first)
        async for event in self.events:
            await self.send_event(send, event)
        if not self.encoder.finished:
            raise StreamTruncatedError
        return self.encoder.end()

    async def send_event(self, send: Send, event: Event) -> None:
        record = self.record
        if record.ttft_ms is None and isinstance(event, CONTENT_EVENTS):
            record.mark_first_token()
        body = self.encoder.encode(event)
        if body is not None:
            await send({"type": "http.response.body", "body": body, "more_body": True})
            record.chunks += 1

    def fail(self, error: ApiError, scope: Scope) -> bytes:
        self.record.error = error.code
        return self.encoder.error(error, str(scope.get(REQUEST_ID_KEY, "")))


def internal_stream_error() -> ApiError:
    return ApiError(
        500,
        "The gateway failed while relaying this stream; this is a bug on our side and the answer is "
        "incomplete. Report it with the request id.",
        code="internal_error",
        type="server_error",
    )
