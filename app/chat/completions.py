"""``POST /v1/chat/completions``: OpenAI's Chat Completions, streamed as chunks or answered as one body."""

from __future__ import annotations

from starlette.requests import Request

from app.chat.intake import HttpChat, http_chat
from app.dialects.openai import CHAT_COMPLETIONS
from app.http.bodies import decode_json, read_json_bytes
from app.services import services_of
from providers.base import Original
from providers.request import CHAT_FIELDS, CHAT_REQUEST_DECODER, FIELDS_DECODER


async def create_chat_completion(request: Request) -> HttpChat:
    raw = await read_json_bytes(request, services_of(request).config.limits.max_body_bytes)
    chat = decode_json(raw, CHAT_REQUEST_DECODER)
    return http_chat(request, chat, CHAT_COMPLETIONS, unknown_fields(raw))


def unknown_fields(raw: bytes) -> Original | None:
    """The body's fields the gateway does not know, for an upstream that speaks Chat Completions too."""
    fields = {name: value for name, value in FIELDS_DECODER.decode(raw).items() if name not in CHAT_FIELDS}
    return Original("openai", fields) if fields else None
