"""A turn's queries for SQLite, shaped for the database thread.

The thread gives up the GIL for every step of SQLite and must take it back from a busy event loop
after each one, so under load each step can wait. So the history comes back as one row (a JSON
array), not one row per message, and a turn's messages go in with one INSERT over a JSON array.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.conversations.database import Statement
from app.conversations.records import MESSAGE_COLUMNS, NewMessage

LEASE = (
    "UPDATE conversations SET turn_token = ?, turn_expires = ? "
    "WHERE id = ? AND owner = ? AND (turn_token IS NULL OR turn_expires < ?)"
)
# One row: whether the conversation is the owner's, and its history (read only under this turn's lease).
HISTORY = f"""
SELECT EXISTS (SELECT 1 FROM conversations WHERE id = ? AND owner = ?),
       (SELECT json_group_array(json_array({MESSAGE_COLUMNS})) FROM (
            SELECT {MESSAGE_COLUMNS} FROM messages
            WHERE conversation_id = ? AND EXISTS (SELECT 1 FROM conversations WHERE id = ? AND turn_token = ?)
            ORDER BY seq DESC LIMIT ?))
"""
COUNT = (
    "UPDATE conversations SET message_count = message_count + ?, updated_us = ?, title = COALESCE(title, ?), "
    "turn_expires = CASE WHEN turn_token = ? THEN NULL ELSE turn_expires END, "
    "turn_token = CASE WHEN turn_token = ? THEN NULL ELSE turn_token END WHERE id = ?"
)
# After COUNT raised message_count by n, the j-th message of the array is numbered count - n + j.
INSERT = f"""
INSERT INTO messages (conversation_id, {MESSAGE_COLUMNS})
SELECT c.id, c.message_count - ? + j.key, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'),
       json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'),
       json_extract(j.value, '$[5]'), json_extract(j.value, '$[6]'), json_extract(j.value, '$[7]'), ?
FROM conversations c, json_each(?) j WHERE c.id = ?
"""


def take(conversation_id: str, owner: str, token: str, now: float, ttl: float, history: int) -> list[Statement]:
    return [
        (LEASE, (token, now + ttl, conversation_id, owner, now)),
        (HISTORY, (conversation_id, owner, conversation_id, conversation_id, token, max(history, 0))),
    ]


def history_rows(history: str | None) -> list[tuple[Any, ...]]:
    """The messages of HISTORY's array, oldest first."""
    return sorted((tuple(row) for row in orjson.loads(history or "[]")), key=lambda row: row[0])


def append(
    conversation_id: str, token: str, messages: list[NewMessage], now: float, title: str | None
) -> list[Statement]:
    rows = [
        [
            m.role,
            m.body.decode(),
            m.reasoning,
            m.model,
            m.finish_reason,
            m.usage.decode() if m.usage is not None else None,
            int(m.incomplete),
            m.error,
        ]
        for m in messages
    ]
    count = len(messages)
    return [
        (COUNT, (count, int(now * 1_000_000), title, token, token, conversation_id)),
        (INSERT, (count, now, orjson.dumps(rows).decode(), conversation_id)),
    ]
