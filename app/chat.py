"""``POST /v1/chat/completions``: decode and check the body, resolve the model, hand over to an Exchange."""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request

from app.bodies import read_json
from app.chunks import ChunkEncoder
from app.completion import CompletionBuilder
from app.errors import ApiError
from app.exchange import Exchange
from app.gateway import gateway_of
from app.middleware import ACCESS_KEY, AccessRecord
from app.native import Summary
from providers.request import CHAT_REQUEST_DECODER, ChatRequest, message_text

# Model names are the client's own text: bound what of them reaches the log.
MODEL_LOG_LIMIT = 200


async def create_chat_completion(request: Request) -> Exchange:
    gateway = gateway_of(request)
    chat = await read_json(request, CHAT_REQUEST_DECODER, gateway.config.limits.max_body_bytes)
    record: AccessRecord = request.scope.get(ACCESS_KEY) or AccessRecord()
    note_request(record, chat, gateway.log_content)
    check_supported(chat)
    plan = gateway.router.resolve(chat.model)
    answer_id = f"chatcmpl-{uuid.uuid4().hex}"
    encoder = ChunkEncoder(answer_id, int(time.time()), chat.model, include_usage=chat.include_usage)
    return Exchange(gateway, chat, plan, record, answer_id, encoder, openai_answer)


def openai_answer(builder: CompletionBuilder, summary: Summary) -> bytes:
    return builder.encode(summary.message_id, int(time.time()), summary.model)


def note_request(record: AccessRecord, chat: ChatRequest, log_content: bool) -> None:
    """What the access line says of the request: its model, and its messages only when LOG_CONTENT is on."""
    record.model = chat.model[:MODEL_LOG_LIMIT]
    if log_content:
        record.content = [{"role": role_of(m), "content": message_text(m.content)} for m in chat.messages]


def role_of(message: object) -> str:
    return type(message).__name__.removesuffix("Message").lower()


def check_supported(chat: ChatRequest) -> None:
    if chat.n is not None and chat.n != 1:
        raise ApiError(
            400,
            f"n={chat.n} asks for several choices, but this gateway returns one choice per request. "
            "Send n=1 or leave it out, and send several requests for several answers.",
            code="unsupported_parameter",
            param="n",
        )
