"""``POST /v1/messages``: Anthropic's Messages API, on the same pipeline as every other chat route.

Its errors are Anthropic's envelope from the first byte read, so the anthropic SDKs raise their own
exception types.
"""

from __future__ import annotations

from starlette.requests import Request

from app.chat.intake import HttpChat, http_chat
from app.dialects.anthropic import MESSAGES, MESSAGES_REQUEST_DECODER, chat_request
from app.errors import ERROR_WRITER_KEY
from app.http.bodies import read_json
from app.services import services_of


async def create_message(request: Request) -> HttpChat:
    request.scope[ERROR_WRITER_KEY] = MESSAGES.error_response
    body = await read_json(request, MESSAGES_REQUEST_DECODER, services_of(request).config.limits.max_body_bytes)
    return http_chat(request, chat_request(body), MESSAGES)
