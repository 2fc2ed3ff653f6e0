"""``POST /v1/messages`` (Anthropic's Messages API, on the same pipeline as every other chat route) and
``POST /v1/messages/count_tokens``.

Its errors are Anthropic's envelope from the first byte read, so the anthropic SDKs raise their own
exception types.
"""

from __future__ import annotations

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from app.chat.intake import HttpChat, http_chat
from app.dialects.anthropic import COUNT_TOKENS_DECODER, MESSAGES, MESSAGES_REQUEST_DECODER, translate
from app.errors import ERROR_WRITER_KEY, ErrorWriter, error_response
from app.http.bodies import decode_json, read_json_bytes
from app.services import services_of
from providers.anthropic import AnthropicProvider
from providers.base import Original
from providers.request import FIELDS_DECODER, ChatRequest, McpTools, estimate_prompt_tokens

COUNT_HEADER = "x-gateway-token-count"  # "upstream": Anthropic counted; "estimate": the gateway did
FORWARDED_HEADERS = ("anthropic-beta", "anthropic-version")  # to an Anthropic upstream, as the client sent them
ENCODER = msgspec.json.Encoder()


async def create_message(request: Request) -> HttpChat:
    """The request is translated for any upstream, and kept as it came for an Anthropic one."""
    request.scope[ERROR_WRITER_KEY] = MESSAGES.error_response
    raw = await read_json_bytes(request, services_of(request).config.limits.max_body_bytes)
    chat, untranslatable = translate(decode_json(raw, MESSAGES_REQUEST_DECODER))
    headers = {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name))}
    original = Original("anthropic", FIELDS_DECODER.decode(raw), headers, verbatim=True)
    return http_chat(request, chat, MESSAGES, original, untranslatable)


async def count_message_tokens(request: Request) -> Response:
    """Anthropic's own count when the model is served by Anthropic, else an estimate (and the header says which).

    Clients decide from it when to compact their context, so it is never a made-up 0.
    """
    request.scope[ERROR_WRITER_KEY] = MESSAGES.error_response
    services = services_of(request)
    raw = await read_json_bytes(request, services.config.limits.max_body_bytes)
    chat, untranslatable = translate(decode_json(raw, COUNT_TOKENS_DECODER))
    deployment = services.router.resolve(chat.model).deployments[0]
    provider = services.router.provider(deployment)
    if isinstance(provider, AnthropicProvider) and not uses_gateway_extensions(chat):
        count = await provider.count_tokens(orjson.loads(raw), deployment, request.headers.get("anthropic-beta"))
        how = "upstream"
    elif untranslatable is not None:
        raise untranslatable  # the model could not be sent this request either
    else:
        count, how = estimate_prompt_tokens(chat), "estimate"
    return Response(ENCODER.encode({"input_tokens": count}), media_type="application/json", headers={COUNT_HEADER: how})


def errors_for(scope: Scope) -> ErrorWriter:
    """The envelope for a refusal before any route ran: Anthropic's on its routes, and for any request
    with an ``anthropic-version`` header (its SDKs send one on every call); OpenAI's otherwise."""
    if scope.get("path", "").startswith("/v1/messages"):
        return MESSAGES.error_response
    if any(name == b"anthropic-version" for name, _ in scope.get("headers", ())):
        return MESSAGES.error_response
    return error_response


def uses_gateway_extensions(chat: ChatRequest) -> bool:
    """A conversation or MCP tools: the upstream cannot count what only the gateway knows."""
    return chat.conversation_id is not None or any(isinstance(tool, McpTools) for tool in chat.tools or ())
