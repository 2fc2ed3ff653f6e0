"""``/v1/responses``: OpenAI's Responses API, on the same pipeline as every other chat route.

The request is translated for any upstream, and kept as it came for a Responses deployment
(``api: responses``), which gets it with only the model rewritten. Answers the gateway writes are
stored (``store`` is on unless the client turns it off, as at OpenAI), so ``previous_response_id``
continues them on any upstream and ``GET``/``DELETE /v1/responses/{id}`` find them. A
``previous_response_id`` the gateway does not hold may be OpenAI's own: it goes only to a Responses
deployment, and is a 404 where the alias has none.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.chat.intake import HttpChat, http_chat
from app.conversations.api import guarded
from app.conversations.responses import Chain, StoredResponses
from app.dialects.responses import RESPONSES_REQUEST_DECODER, Responses, translate
from app.errors import JSON
from app.http.auth import owner_of
from app.http.bodies import decode_json, read_json_bytes
from app.services import services_of
from providers.base import Original
from providers.request import FIELDS_DECODER

FORWARDED_HEADERS = ("openai-beta",)  # to a Responses upstream, as the client sent them


async def create_response(request: Request) -> HttpChat:
    raw = await read_json_bytes(request, services_of(request).config.limits.max_body_bytes)
    body = decode_json(raw, RESPONSES_REQUEST_DECODER)
    chat, untranslatable = translate(body)
    dialect = Responses(chat)
    chain = Chain(body.previous_response_id, body.store is not False, 1 if body.instructions else 0, dialect)
    headers = {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name))}
    original = Original("openai_responses", FIELDS_DECODER.decode(raw), headers, verbatim=True)
    return http_chat(request, chat, dialect, original, untranslatable, chain)


async def get_response(request: Request) -> Response:
    body = await guarded(stored_responses(request).body(request.path_params["response_id"], owner_of(request.scope)))
    return Response(body, media_type=JSON)


async def delete_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]
    await guarded(stored_responses(request).delete(response_id, owner_of(request.scope)))
    return Response(orjson.dumps({"id": response_id, "object": "response", "deleted": True}), media_type=JSON)


def stored_responses(request: Request) -> StoredResponses:
    responses: StoredResponses = request.app.state.intake.responses
    return responses
