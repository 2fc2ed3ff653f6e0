"""``POST /v1/responses``: OpenAI's Responses API, on the same pipeline as every other chat route.

The request is translated for any upstream. What the gateway does not keep yet, it refuses with a
400 that says so rather than answer as if it had: ``previous_response_id`` (stored responses).
"""

from __future__ import annotations

from starlette.requests import Request

from app.chat.intake import HttpChat, http_chat
from app.dialects.responses import RESPONSES_REQUEST_DECODER, Responses, translate
from app.errors import ApiError
from app.http.bodies import read_json
from app.services import services_of


async def create_response(request: Request) -> HttpChat:
    body = await read_json(request, RESPONSES_REQUEST_DECODER, services_of(request).config.limits.max_body_bytes)
    if body.previous_response_id is not None:
        raise ApiError(
            400,
            "previous_response_id needs responses stored by the gateway, which it does not keep yet. Send the "
            "whole conversation in `input` (with store: false, as Codex does), or use a conversation_id.",
            code="unsupported_parameter",
            param="previous_response_id",
        )
    chat, untranslatable = translate(body)
    return http_chat(request, chat, Responses(chat), untranslatable=untranslatable)
