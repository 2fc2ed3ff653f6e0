"""A turn's two queries for PostgreSQL, each in one statement (so one round trip, and atomic).

Under load every round trip waits for a turn of the busy event loop, so the lease, the existence
check and the history come back together, and a turn's messages go in with its release.
"""

from __future__ import annotations

from typing import Any

from app.conversations.records import MESSAGE_COLUMNS, NewMessage

HISTORY_COLUMNS = ", ".join(f"h.{column.strip()}" for column in MESSAGE_COLUMNS.split(","))

# Rows: (taken, exists, *message columns); one row with NULL columns when there is no history.
TAKE = f"""
WITH taken AS (
    UPDATE conversations SET turn_token = ?, turn_expires = ?
    WHERE id = ? AND owner = ? AND (turn_token IS NULL OR turn_expires < ?)
    RETURNING id
), history AS (
    SELECT m.* FROM messages m JOIN taken ON m.conversation_id = taken.id ORDER BY m.seq DESC LIMIT ?
)
SELECT EXISTS (SELECT 1 FROM taken), EXISTS (SELECT 1 FROM conversations WHERE id = ? AND owner = ?),
       {HISTORY_COLUMNS}
FROM (SELECT 1) AS one LEFT JOIN history h ON TRUE
ORDER BY h.seq DESC
"""

# One row per message stored; none when the conversation was deleted while the turn ran.
APPEND = """
WITH updated AS (
    UPDATE conversations SET message_count = message_count + ?, updated_us = ?, title = COALESCE(title, ?),
        turn_expires = CASE WHEN turn_token = ? THEN NULL ELSE turn_expires END,
        turn_token = CASE WHEN turn_token = ? THEN NULL ELSE turn_token END
    WHERE id = ?
    RETURNING id, message_count
)
INSERT INTO messages (conversation_id, seq, role, body, reasoning, model, finish_reason, usage, incomplete,
                      error, created_at)
SELECT updated.id, updated.message_count - CAST(? AS INTEGER) + CAST(m.ord AS INTEGER) - 1, m.role, m.body,
       m.reasoning, m.model, m.finish_reason, m.usage, m.incomplete, m.error, CAST(? AS DOUBLE PRECISION)
FROM updated, unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),
                     CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]), CAST(? AS TEXT[]))
     WITH ORDINALITY AS m(role, body, reasoning, model, finish_reason, usage, incomplete, error, ord)
RETURNING 1
"""


def take_args(conversation_id: str, owner: str, token: str, now: float, ttl: float, history: int) -> tuple[Any, ...]:
    return (token, now + ttl, conversation_id, owner, now, max(history, 0), conversation_id, owner)


def append_args(
    conversation_id: str, token: str, messages: list[NewMessage], now: float, title: str | None
) -> tuple[Any, ...]:
    count = len(messages)
    return (
        count,
        int(now * 1_000_000),
        title,
        token,
        token,
        conversation_id,
        count,
        now,
        [m.role for m in messages],
        [m.body.decode() for m in messages],
        [m.reasoning for m in messages],
        [m.model for m in messages],
        [m.finish_reason for m in messages],
        [m.usage.decode() if m.usage is not None else None for m in messages],
        [int(m.incomplete) for m in messages],
        [m.error for m in messages],
    )
