"""``POST /v1/completions``: OpenAI's legacy Completions API, the prompt answered by any chat model."""

from __future__ import annotations

from starlette.requests import Request

from app.chat.intake import HttpChat, http_chat
from app.dialects.completions import COMPLETION_REQUEST_DECODER, TEXT_COMPLETIONS, chat_request
from app.http.bodies import read_json
from app.services import services_of


async def create_completion(request: Request) -> HttpChat:
    body = await read_json(request, COMPLETION_REQUEST_DECODER, services_of(request).config.limits.max_body_bytes)
    return http_chat(request, chat_request(body), TEXT_COMPLETIONS)
