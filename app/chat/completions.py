"""``POST /v1/chat/completions``: OpenAI's Chat Completions, streamed as chunks or answered as one body."""

from __future__ import annotations

from starlette.requests import Request

from app.chat.intake import HttpChat, http_chat
from app.dialects.openai import CHAT_COMPLETIONS
from app.http.bodies import read_json
from app.services import services_of
from providers.request import CHAT_REQUEST_DECODER


async def create_chat_completion(request: Request) -> HttpChat:
    chat = await read_json(request, CHAT_REQUEST_DECODER, services_of(request).config.limits.max_body_bytes)
    return http_chat(request, chat, CHAT_COMPLETIONS)
