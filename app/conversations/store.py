"""Conversations and their messages in a database: migrations and every query.

One conversation answers one turn at a time. A turn holds a lease on its conversation (a token and
an expiry in the row), renewed while the gateway that holds it lives, and released when the turn's
messages are stored; a gateway that dies mid-turn lets its leases expire. The lease lives in the
database, so it holds across worker processes and replicas alike.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson

from app.conversations import postgres_turns, sqlite_turns
from app.conversations.database import Database
from app.conversations.records import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    MIGRATIONS,
    TITLE_LENGTH,
    Conversation,
    NewMessage,
    StoredMessage,
    conversation_of,
    message_of,
)

CURSOR = re.compile(r"([0-9]{1,18})\.([A-Za-z0-9_-]{1,128})")
LeaseOutcome = Literal["acquired", "busy", "missing"]


class CursorError(ValueError):
    """A pagination cursor this store did not make."""


class ConversationStore:
    def __init__(self, database: Database):
        self.db = database
        self.postgres = database.url_for_logs.startswith("postgres")  # a turn's queries have their own form there

    async def migrate(self) -> None:
        """Create the schema, or bring it up to date; safe when several gateways start at once."""
        async with self.db.transaction() as tx:
            if self.postgres:
                await tx.execute("SELECT pg_advisory_xact_lock(7264013)")  # one migrating replica at a time
            await tx.execute("CREATE TABLE IF NOT EXISTS gateway_schema (version INTEGER NOT NULL)")
            rows = await tx.fetch("SELECT version FROM gateway_schema")
            version = rows[0][0] if rows else 0
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    await tx.execute(statement)
            if not rows:
                await tx.execute("INSERT INTO gateway_schema (version) VALUES (?)", len(MIGRATIONS))
            else:
                await tx.execute("UPDATE gateway_schema SET version = ?", len(MIGRATIONS))

    async def create(self, conversation: Conversation, owner: str) -> None:
        await self.db.execute(
            f"INSERT INTO conversations ({CONVERSATION_COLUMNS}, owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
            conversation.id,
            conversation.title,
            orjson.dumps(conversation.metadata).decode(),
            conversation.created_us,
            conversation.updated_us,
            conversation.message_count,
            owner,
        )

    async def get(self, conversation_id: str, owner: str) -> Conversation | None:
        rows = await self.db.fetch(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ? AND owner = ?", conversation_id, owner
        )
        return conversation_of(rows[0]) if rows else None

    async def newest(self, owner: str, limit: int, cursor: str | None) -> tuple[list[Conversation], str | None]:
        """A page of the owner's conversations, newest first, and the cursor for the next page (None at the end)."""
        where, args = "owner = ?", list[Any]([owner])
        if cursor is not None:
            created_us, last_id = decode_cursor(cursor)
            where += " AND (created_us < ? OR (created_us = ? AND id < ?))"
            args += [created_us, created_us, last_id]
        rows = await self.db.fetch(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE {where} ORDER BY created_us DESC, id DESC LIMIT ?",
            *args,
            limit + 1,
        )
        page = [conversation_of(row) for row in rows[:limit]]
        more = len(rows) > limit
        return page, f"{page[-1].created_us}.{page[-1].id}" if more else None

    async def messages(self, conversation_id: str, after: int, limit: int) -> list[StoredMessage]:
        """Messages in order, from the one after ``after`` (a seq; -1 for the first)."""
        rows = await self.db.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            conversation_id,
            after,
            limit,
        )
        return [message_of(row) for row in rows]

    async def recent(self, conversation_id: str, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?",
            conversation_id,
            max(limit, 0),
        )
        return [message_of(row) for row in reversed(rows)]

    async def delete(self, conversation_id: str, owner: str) -> bool:
        (_, _), (_, deleted) = await self.db.batch(
            [
                (
                    "DELETE FROM messages WHERE conversation_id IN "
                    "(SELECT id FROM conversations WHERE id = ? AND owner = ?)",
                    (conversation_id, owner),
                ),
                ("DELETE FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)),
            ],
            transaction=True,
        )
        return deleted > 0

    async def take(
        self, conversation_id: str, owner: str, token: str, now: float, ttl: float, history: int
    ) -> tuple[LeaseOutcome, list[StoredMessage]]:
        """Lease the conversation for one turn and read its last ``history`` messages, in one trip.

        The lease is refused while another turn holds an unexpired one; the messages are read only
        under this turn's own lease.
        """
        if self.postgres:
            args = postgres_turns.take_args(conversation_id, owner, token, now, ttl, history)
            found = await self.db.fetch(postgres_turns.TAKE, *args)
            taken, exists = found[0][0], found[0][1]
            rows = [row[2:] for row in found if row[2] is not None]
            if taken:
                return "acquired", [message_of(row) for row in reversed(rows)]
            return ("busy" if exists else "missing"), []
        (_, taken), (found, _) = await self.db.batch(
            sqlite_turns.take(conversation_id, owner, token, now, ttl, history)
        )
        exists, history_json = found[0]
        if taken:
            return "acquired", [message_of(row) for row in sqlite_turns.history_rows(history_json)]
        return ("busy" if exists else "missing"), []

    async def renew(self, token_prefix: str, expires: float) -> int:
        """Extend every lease whose token starts with ``token_prefix`` (all of one gateway process's turns)."""
        return await self.db.execute(
            "UPDATE conversations SET turn_expires = ? WHERE turn_token LIKE ?", expires, token_prefix + "%"
        )

    async def release(self, conversation_id: str, token: str) -> None:
        await self.db.execute(
            "UPDATE conversations SET turn_token = NULL, turn_expires = NULL WHERE id = ? AND turn_token = ?",
            conversation_id,
            token,
        )

    async def append(
        self, conversation_id: str, token: str, messages: list[NewMessage], now: float, title: str | None
    ) -> bool:
        """Store a turn's messages and release its lease, in one transaction. False when the conversation is gone.

        The update comes first: it numbers the messages and, in PostgreSQL, locks the row until the end.
        """
        title = title[:TITLE_LENGTH] if title else None
        if self.postgres:
            args = postgres_turns.append_args(conversation_id, token, messages, now, title)
            return bool(await self.db.fetch(postgres_turns.APPEND, *args))
        (_, updated), _ = await self.db.batch(
            sqlite_turns.append(conversation_id, token, messages, now, title), transaction=True
        )
        return updated > 0


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``<created_us>.<id>``, as ``newest`` makes it; openapi.yaml gives its pattern."""
    match = CURSOR.fullmatch(cursor)
    if match is None:
        raise CursorError(cursor)
    return int(match.group(1)), match.group(2)
