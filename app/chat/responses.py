"""``POST /v1/responses``: OpenAI's Responses API, on the same pipeline as every other chat route.

The request is translated for any upstream, and kept as it came for a Responses deployment
(``api: responses``), which gets it with only the model rewritten. What only such a deployment can
take (``previous_response_id``, which needs OpenAI's stored responses) goes only to one, and is a
400 that says so for the others.
"""

from __future__ import annotations

from starlette.requests import Request

from app.chat.intake import HttpChat, http_chat
from app.dialects.responses import RESPONSES_REQUEST_DECODER, Responses, translate
from app.errors import ApiError
from app.http.bodies import decode_json, read_json_bytes
from app.services import services_of
from providers.base import Original
from providers.request import FIELDS_DECODER

FORWARDED_HEADERS = ("openai-beta",)  # to a Responses upstream, as the client sent them
NOT_STORED = ApiError(
    400,
    "previous_response_id needs responses stored by the gateway, which it does not keep yet; only a model "
    "served by OpenAI's Responses API (api: responses) takes it. Send the whole conversation in `input` (with "
    "store: false, as Codex does), or use a conversation_id.",
    code="unsupported_parameter",
    param="previous_response_id",
)


async def create_response(request: Request) -> HttpChat:
    raw = await read_json_bytes(request, services_of(request).config.limits.max_body_bytes)
    body = decode_json(raw, RESPONSES_REQUEST_DECODER)
    chat, untranslatable = translate(body)
    if body.previous_response_id is not None:
        untranslatable = NOT_STORED
    headers = {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name))}
    original = Original("openai_responses", FIELDS_DECODER.decode(raw), headers, verbatim=True)
    return http_chat(request, chat, Responses(chat), original, untranslatable)
