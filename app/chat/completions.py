"""``POST /v1/chat/completions``: OpenAI's Chat Completions, streamed as chunks or answered as one body."""

from __future__ import annotations

from starlette.requests import Request

from app.chat.intake import HttpChat, claim_http, intake_of
from app.dialects.openai import CHAT_COMPLETIONS
from app.http.bodies import read_json
from providers.request import CHAT_REQUEST_DECODER


async def create_chat_completion(request: Request) -> HttpChat:
    intake = intake_of(request)
    chat = await read_json(request, CHAT_REQUEST_DECODER, intake.services.config.limits.max_body_bytes)
    return HttpChat(intake, claim_http(request, chat), CHAT_COMPLETIONS)
