"""``POST /v1/chat/completions``: decode, route, call the provider, answer as SSE or one JSON body."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import Response

from app.bodies import read_json
from app.chunks import ChunkEncoder
from app.completion import CompletionBuilder
from app.errors import ApiError
from app.gateway import gateway_of
from app.middleware import ACCESS_KEY, AccessRecord
from app.relay import EventStreamResponse
from providers.base import CONTENT_EVENTS, Event, StreamTruncatedError
from providers.request import CHAT_REQUEST_DECODER, ChatRequest

# Model names are the client's own text: bound what of them reaches the log.
MODEL_LOG_LIMIT = 200


async def create_chat_completion(request: Request) -> Response | EventStreamResponse:
    gateway = gateway_of(request)
    chat = await read_json(request, CHAT_REQUEST_DECODER, gateway.config.limits.max_body_bytes)
    record: AccessRecord = request.scope.get(ACCESS_KEY) or AccessRecord()
    record.model = chat.model[:MODEL_LOG_LIMIT]
    check_supported(chat)
    provider, deployment = gateway.router.resolve(chat.model)
    events = provider.stream(chat, deployment)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not chat.stream:
        try:
            builder = await collect(events, record)
        finally:
            await events.aclose()
        return Response(builder.encode(completion_id, created, chat.model), media_type="application/json")
    try:
        # Wait for the upstream to accept the request, so that its refusal still gets its own status.
        first = await anext(events, None)
    except BaseException:
        await events.aclose()
        raise
    if first is None:
        raise StreamTruncatedError
    encoder = ChunkEncoder(completion_id, created, chat.model, include_usage=chat.include_usage)
    return EventStreamResponse(first, events, encoder, record)


def check_supported(chat: ChatRequest) -> None:
    if chat.n is not None and chat.n != 1:
        raise ApiError(
            400,
            f"n={chat.n} asks for several choices, but this gateway returns one choice per request. "
            "Send n=1 or leave it out, and send several requests for several answers.",
            code="unsupported_parameter",
            param="n",
        )


async def collect(events: AsyncGenerator[Event, None], record: AccessRecord) -> CompletionBuilder:
    builder = CompletionBuilder()
    async for event in events:
        if record.ttft_ms is None and isinstance(event, CONTENT_EVENTS):
            record.mark_first_token()
        builder.add(event)
    if builder.finish is None:
        raise StreamTruncatedError
    return builder
