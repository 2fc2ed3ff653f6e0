"""``POST /api/v1/chat``: the native API. The Accept header picks named SSE events or one JSON body;
the rest is the same pipeline as chat completions, in the native dialect."""

from __future__ import annotations

import msgspec
from starlette.requests import Request

from app.chat.intake import HttpChat, http_chat
from app.dialects.native import NATIVE_CHAT
from app.errors import ApiError
from app.http.bodies import read_json
from app.services import services_of
from providers.request import CHAT_REQUEST_DECODER

JSON_TYPES = {"application/json", "application/*", "*/*"}


def wants_stream(accept: str | None) -> bool:
    """True for ``text/event-stream``, False for JSON (or no Accept at all); anything else is a 406."""
    types = {part.partition(";")[0].strip().lower() for part in (accept or "*/*").split(",")}
    if "text/event-stream" in types:
        return True
    if types & JSON_TYPES:
        return False
    raise ApiError(
        406,
        f"This route answers as text/event-stream (events) or application/json (one body), and the request's "
        f"Accept header allows neither ({accept[:100] if accept else ''!r}). Send Accept: text/event-stream or "
        "application/json.",
        code="not_acceptable",
    )


async def create_native_chat(request: Request) -> HttpChat:
    stream = wants_stream(request.headers.get("accept"))
    chat = await read_json(request, CHAT_REQUEST_DECODER, services_of(request).config.limits.max_body_bytes)
    chat = msgspec.structs.replace(chat, stream=stream)
    return http_chat(request, chat, NATIVE_CHAT)
