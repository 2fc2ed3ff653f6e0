"""``/api/v1/conversations``: create, list (newest first), read with messages (oldest first), delete.

With gateway keys configured, a conversation belongs to the key that created it; to any other key
it does not exist (404), so ids reveal nothing across keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.conversations.database import DatabaseError
from app.conversations.records import Conversation, StoredMessage
from app.conversations.store import CursorError
from app.conversations.turns import Conversations, conversation_not_found, store_unavailable
from app.errors import ApiError
from app.http.auth import owner_of
from app.http.bodies import read_optional_json
from providers.base import digits_value

T = TypeVar("T")
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=512)]


class NewConversation(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=16)] = {}


NEW_CONVERSATION_DECODER = msgspec.json.Decoder(NewConversation)
LIST_LIMITS = (20, 100)  # default and most per page
MESSAGE_LIMITS = (100, 500)


async def create_conversation(request: Request) -> Response:
    conversations = await ready(request)
    body = await read_optional_json(request, NEW_CONVERSATION_DECODER, 64 * 1024) or NewConversation()
    now = time.time_ns() // 1000
    conversation = Conversation(f"conv_{uuid.uuid4().hex}", body.title, body.metadata, now, now, 0)
    await guarded(conversations.store.create(conversation, owner_of(request.scope)))
    headers = {"location": f"/api/v1/conversations/{conversation.id}"}
    return json_response(summary(conversation), status=201, headers=headers)


async def list_conversations(request: Request) -> Response:
    conversations = await ready(request)
    limit = page_limit(request, LIST_LIMITS)
    cursor = request.query_params.get("cursor")
    try:
        page, next_cursor = await guarded(conversations.store.newest(owner_of(request.scope), limit, cursor))
    except CursorError:
        raise invalid_cursor() from None
    return json_response({"object": "list", "data": [summary(c) for c in page], "next_cursor": next_cursor})


async def get_conversation(request: Request) -> Response:
    conversations = await ready(request)
    conversation = await find(conversations, request)
    limit = page_limit(request, MESSAGE_LIMITS)
    cursor = request.query_params.get("cursor")
    after = -1 if cursor is None else digits_value(cursor) if len(cursor) <= 12 else None
    if after is None:
        raise invalid_cursor()
    messages = await guarded(conversations.store.messages(conversation.id, after, limit + 1))
    more = len(messages) > limit
    messages = messages[:limit]
    return json_response(
        {
            **summary(conversation),
            "messages": [message_out(m) for m in messages],
            "next_cursor": str(messages[-1].seq) if more else None,
        }
    )


async def delete_conversation(request: Request) -> Response:
    conversations = await ready(request)
    conversation_id = request.path_params["conversation_id"]
    if not await guarded(conversations.store.delete(conversation_id, owner_of(request.scope))):
        raise conversation_not_found(conversation_id)
    return Response(status_code=204)


def conversations_of(request: Request) -> Conversations:
    conversations: Conversations = request.app.state.conversations
    return conversations


async def ready(request: Request) -> Conversations:
    conversations = conversations_of(request)
    await guarded(conversations.ready())
    return conversations


async def find(conversations: Conversations, request: Request) -> Conversation:
    conversation_id = request.path_params["conversation_id"]
    conversation = await guarded(conversations.store.get(conversation_id, owner_of(request.scope)))
    if conversation is None:
        raise conversation_not_found(conversation_id)
    return conversation


async def guarded(work: Awaitable[T]) -> T:
    """A database that is down is the gateway's trouble, not the client's: a 503 saying so."""
    try:
        return await work
    except DatabaseError as exc:
        raise store_unavailable(exc) from None


def page_limit(request: Request, limits: tuple[int, int]) -> int:
    default, most = limits
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    limit = digits_value(raw)
    if limit is None or not 1 <= limit <= most:
        raise ApiError(
            400,
            f"limit must be a whole number from 1 to {most}, got {raw[:40]!r}.",
            code="invalid_value",
            param="limit",
        )
    return limit


def invalid_cursor() -> ApiError:
    return ApiError(
        400,
        "cursor is not one this gateway made. Pass the next_cursor of the previous page unchanged, "
        "or leave it out for the first page.",
        code="invalid_cursor",
        param="cursor",
    )


def summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "object": "conversation",
        "title": conversation.title,
        "metadata": conversation.metadata,
        "created_at": conversation.created_us // 1_000_000,
        "updated_at": conversation.updated_us // 1_000_000,
        "message_count": conversation.message_count,
    }


def message_out(message: StoredMessage) -> dict[str, Any]:
    """The OpenAI-shaped message, with what the gateway recorded about it."""
    out: dict[str, Any] = {"seq": message.seq, "content": None, **orjson.loads(message.body)}
    out["incomplete"] = message.incomplete
    out["created_at"] = int(message.created_at)
    if message.role == "assistant":
        out.update(
            reasoning=message.reasoning,
            model=message.model,
            finish_reason=message.finish_reason,
            usage=orjson.loads(message.usage) if message.usage is not None else None,
            error=message.error,
        )
    return out


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type="application/json")
