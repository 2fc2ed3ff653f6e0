"""``POST /v1/chat/completions``: decode and check the body, resolve the model, hand over to an Exchange."""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request

from app.auth import owner_of
from app.bodies import read_json
from app.chunks import ChunkEncoder
from app.completion import CompletionBuilder
from app.conversations.db import DatabaseError
from app.conversations.turns import Turn, store_unavailable
from app.errors import ApiError
from app.exchange import Exchange
from app.gateway import Gateway, gateway_of
from app.mcp_tools import offer_tools
from app.middleware import ACCESS_KEY, AccessRecord
from app.native import Summary
from app.tool_loop import ToolLoop
from providers.request import CHAT_REQUEST_DECODER, ChatRequest, McpTools, message_role, message_text
from providers.router import Plan

# Model names are the client's own text: bound what of them reaches the log.
MODEL_LOG_LIMIT = 200
CONVERSATION_HEADER = "x-conversation-id"


async def create_chat_completion(request: Request) -> Exchange:
    gateway = gateway_of(request)
    chat = await read_json(request, CHAT_REQUEST_DECODER, gateway.config.limits.max_body_bytes)
    record: AccessRecord = request.scope.get(ACCESS_KEY) or AccessRecord()
    note_request(record, chat, gateway.log_content)
    check_supported(chat)
    plan = gateway.router.resolve(chat.model)
    conversation_id = conversation_id_of(chat, request.headers.get(CONVERSATION_HEADER))
    chat, tools = await with_tools(gateway, chat, plan, record)
    chat, turn = await join_conversation(gateway, chat, conversation_id, owner_of(request.scope))
    answer_id = f"chatcmpl-{uuid.uuid4().hex}"
    encoder = ChunkEncoder(answer_id, int(time.time()), chat.model, include_usage=chat.include_usage)
    return Exchange(gateway, chat, plan, record, answer_id, encoder, openai_answer, turn, tools)


async def with_tools(
    gateway: Gateway, chat: ChatRequest, plan: Plan, record: AccessRecord
) -> tuple[ChatRequest, ToolLoop | None]:
    """With MCP tools asked for (by the request or its alias): the request offering them, and the loop."""
    if not plan.mcp and not any(isinstance(tool, McpTools) for tool in chat.tools or ()):
        return chat, None
    chat, offered = await offer_tools(gateway.mcp, chat, plan)
    if not offered:
        return chat, None
    return chat, ToolLoop(gateway.mcp, offered, gateway.config.tool_loop.max_rounds, record, gateway.log_content)


def conversation_id_of(chat: ChatRequest, header: str | None) -> str | None:
    """The body's ``conversation_id``, else the X-Conversation-Id header (a proxy may add the header)."""
    if header is not None and not 1 <= len(header) <= 128:
        raise ApiError(
            400,
            f"The X-Conversation-Id header must be 1 to 128 characters, got {len(header)}. Send a conversation's "
            "id from POST /api/v1/conversations, or leave the header out.",
            code="invalid_value",
            param="X-Conversation-Id",
        )
    return chat.conversation_id or header or None


async def join_conversation(
    gateway: Gateway, chat: ChatRequest, conversation_id: str | None, owner: str
) -> tuple[ChatRequest, Turn | None]:
    """With a conversation: its history put into the request, and the turn that stores the answer."""
    if conversation_id is None:
        return chat, None
    try:
        return await gateway.conversations.begin(chat, conversation_id, owner)
    except DatabaseError as exc:
        raise store_unavailable(exc) from None


def openai_answer(builder: CompletionBuilder, summary: Summary) -> bytes:
    return builder.encode(summary.message_id, int(time.time()), summary.model)


def note_request(record: AccessRecord, chat: ChatRequest, log_content: bool) -> None:
    """What the access line says of the request: its model, and its messages only when LOG_CONTENT is on."""
    record.model = chat.model[:MODEL_LOG_LIMIT]
    if log_content:
        record.content = [{"role": message_role(m), "content": message_text(m.content)} for m in chat.messages]


def check_supported(chat: ChatRequest) -> None:
    if chat.n is not None and chat.n != 1:
        raise ApiError(
            400,
            f"n={chat.n} asks for several choices, but this gateway returns one choice per request. "
            "Send n=1 or leave it out, and send several requests for several answers.",
            code="unsupported_parameter",
            param="n",
        )
