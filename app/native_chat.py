"""``POST /api/v1/chat``: the native API. The Accept header picks named SSE events or one JSON body;
the rest is the same pipeline as chat completions, with the native encoder."""

from __future__ import annotations

import uuid

import msgspec
from starlette.requests import Request

from app.auth import owner_of
from app.bodies import read_json
from app.chat import (
    CONVERSATION_HEADER,
    check_supported,
    conversation_id_of,
    join_conversation,
    note_request,
    with_tools,
)
from app.errors import ApiError
from app.exchange import Exchange
from app.gateway import gateway_of
from app.middleware import ACCESS_KEY, AccessRecord
from app.native import NativeSSEEncoder, whole_answer
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


async def create_native_chat(request: Request) -> Exchange:
    gateway = gateway_of(request)
    stream = wants_stream(request.headers.get("accept"))
    chat = await read_json(request, CHAT_REQUEST_DECODER, gateway.config.limits.max_body_bytes)
    record: AccessRecord = request.scope.get(ACCESS_KEY) or AccessRecord()
    note_request(record, chat, gateway.log_content)
    check_supported(chat)
    chat = msgspec.structs.replace(chat, stream=stream)
    plan = gateway.router.resolve(chat.model)
    conversation_id = conversation_id_of(chat, request.headers.get(CONVERSATION_HEADER))
    chat, tools = await with_tools(gateway, chat, plan, record)
    chat, turn = await join_conversation(gateway, chat, conversation_id, owner_of(request.scope))
    message_id = f"msg_{uuid.uuid4().hex}"
    return Exchange(gateway, chat, plan, record, message_id, NativeSSEEncoder(), whole_answer, turn, tools)
