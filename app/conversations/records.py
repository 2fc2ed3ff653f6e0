"""What the store keeps: the schema and its migrations, and the records read from and written to it."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

# Each migration runs once, in order, in one transaction; the list only ever grows.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            title TEXT,
            metadata TEXT NOT NULL,
            created_us BIGINT NOT NULL,
            updated_us BIGINT NOT NULL,
            message_count INTEGER NOT NULL,
            turn_token TEXT,
            turn_expires DOUBLE PRECISION
        )""",
        "CREATE INDEX conversations_newest ON conversations (owner, created_us DESC, id DESC)",
        """CREATE TABLE messages (
            conversation_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            body TEXT NOT NULL,
            reasoning TEXT,
            model TEXT,
            finish_reason TEXT,
            usage TEXT,
            incomplete INTEGER NOT NULL,
            error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        )""",
    ],
    [
        # Stored Responses-API answers: each keeps the messages it added (its input, then its answer),
        # and points at the response it continued; a chain is read by walking those pointers.
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            previous_id TEXT,
            created_us BIGINT NOT NULL,
            messages TEXT NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX responses_created ON responses (created_us)",
    ],
]
CONVERSATION_COLUMNS = "id, title, metadata, created_us, updated_us, message_count"
MESSAGE_COLUMNS = "seq, role, body, reasoning, model, finish_reason, usage, incomplete, error, created_at"
TITLE_LENGTH = 80  # a conversation without a title takes the start of its first user message


class Conversation(msgspec.Struct):
    id: str
    title: str | None
    metadata: dict[str, str]
    created_us: int  # microseconds since the epoch: exact, so pages never skip or repeat a conversation
    updated_us: int
    message_count: int


class StoredMessage(msgspec.Struct, omit_defaults=True):
    """One message as kept: the OpenAI-shaped message (``body``) and what the gateway knows of it."""

    seq: int
    role: str
    body: bytes
    created_at: float
    incomplete: bool = False
    reasoning: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    usage: bytes | None = None
    error: str | None = None


class NewMessage(msgspec.Struct):
    """A message to append: its role and OpenAI-shaped JSON, and for answers, how they came out."""

    role: str
    body: bytes
    incomplete: bool = False
    reasoning: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    usage: bytes | None = None
    error: str | None = None


def conversation_of(row: tuple[Any, ...]) -> Conversation:
    id_, title, metadata, created_us, updated_us, count = row
    return Conversation(id_, title, orjson.loads(metadata), created_us, updated_us, count)


def message_of(row: tuple[Any, ...]) -> StoredMessage:
    seq, role, body, reasoning, model, finish, usage, incomplete, error, created_at = row
    return StoredMessage(
        seq,
        role,
        body.encode(),
        created_at,
        bool(incomplete),
        reasoning,
        model,
        finish,
        usage.encode() if usage is not None else None,
        error,
    )
