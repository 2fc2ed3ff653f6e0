"""Stored Responses-API answers: ``store`` keeps a response, ``previous_response_id`` continues it on any upstream.

- A stored response keeps the messages it added to its chain (its input, then its answer, as the
  canonical messages a conversation keeps) and the id of the response it continued. A new request's
  history is read by walking those ids back in one recursive query, at most as many steps as the
  history window has messages (each response adds at least one), then windowed like a conversation's.
- Instructions are not carried on, as OpenAI does not carry them; input items of role system or
  developer are.
- It also keeps the ``response`` object as the client saw it, for ``GET /v1/responses/{id}``.
- A response belongs to the gateway key that made it; to another key it does not exist (404). It
  is kept ``responses_days`` (30 by default, as OpenAI keeps its own), then purged.
- An answer an ``api: responses`` deployment served as it came is OpenAI's, stored by OpenAI under
  OpenAI's id; the gateway keeps only the answers it wrote itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Protocol

import msgspec
import structlog

from app.conversations.answers import Outcome, adding, answer_messages
from app.conversations.database import DatabaseError
from app.conversations.history import replayable, window
from app.conversations.records import StoredMessage
from app.conversations.turns import STORE_RETRY_DELAYS, Conversations, store_unavailable
from app.dialects.answer import AnswerBuilder
from app.errors import ApiError
from providers.base import Event
from providers.request import JSON_ENCODER, ChatRequest, Message, message_role

PURGE_EVERY_SECONDS = 3600.0
FINISH_WAIT = 1.0
CHAIN = """
WITH RECURSIVE chain(id, previous_id, messages, depth) AS (
    SELECT id, previous_id, messages, 0 FROM responses WHERE id = ? AND owner = ? AND created_us >= ?
    UNION ALL
    SELECT r.id, r.previous_id, r.messages, chain.depth + 1
    FROM responses r JOIN chain ON r.id = chain.previous_id
    WHERE r.owner = ? AND r.created_us >= ? AND chain.depth + 1 < ?
)
SELECT messages FROM chain ORDER BY depth DESC
"""
log = structlog.get_logger("gateway.responses")


class KeptMessage(msgspec.Struct, omit_defaults=True):
    role: str
    body: msgspec.Raw  # the canonical message's JSON, as a conversation keeps it
    incomplete: bool = False


KEPT_DECODER = msgspec.json.Decoder(list[KeptMessage])


class Renderer(Protocol):
    """The Responses dialect, which writes the ``response`` object that GET returns."""

    def kept(self, answer: AnswerBuilder, answer_id: str, outcome: Outcome, error: str | None) -> bytes: ...


class Chain(msgspec.Struct):
    """What a Responses request says of stored responses."""

    previous_id: str | None
    store: bool
    instructions: int  # how many of the request's first messages are its instructions, never carried on
    renderer: Renderer


class ResponseNotFoundError(ApiError):
    def __init__(self, response_id: str, param: str | None = None):
        where = "Previous response" if param else "Response"
        super().__init__(
            404,
            f"{where} with id {response_id[:128]!r} not found for this key. The gateway keeps the responses it "
            "answered with store left on, for the key that made them; responses an `api: responses` deployment "
            "answered are stored by OpenAI, and only such a model continues them.",
            code="previous_response_not_found" if param else "response_not_found",
            param=param,
        )


class StoredResponses:
    def __init__(self, conversations: Conversations):
        self.conversations = conversations  # the same database, opened once
        self.purged = time.monotonic()

    def since(self) -> int:
        """The oldest creation time (microseconds) of a response still kept."""
        days = self.conversations.settings.responses_days
        return int((time.time() - days * 86400) * 1_000_000)

    async def begin(
        self, chat: ChatRequest, chain: Chain, owner: str, answer_id: str
    ) -> tuple[ChatRequest, ResponseKeeper | None]:
        """The request with the chain's history after its instructions, and the keeper of its answer."""
        instructions, new = chat.messages[: chain.instructions], chat.messages[chain.instructions :]
        if chain.previous_id is not None:
            max_messages, max_tokens = self.conversations.settings.limits_for(chat.model)
            stored = await self.history(chain.previous_id, owner, max_messages)
            history = window(replayable(stored), chat.messages, max_messages, max_tokens)
            chat = msgspec.structs.replace(chat, messages=[*instructions, *history, *new])
        if not chain.store:
            return chat, None
        return chat, ResponseKeeper(self, answer_id, owner, chain.previous_id, new, chain.renderer)

    async def history(self, response_id: str, owner: str, depth: int) -> list[StoredMessage]:
        """The chain's messages up to and including ``response_id``'s answer, oldest first."""
        try:
            await self.conversations.ready()
            since = self.since()
            rows = await self.conversations.store.db.fetch(
                CHAIN, response_id, owner, since, owner, since, max(depth, 1)
            )
        except DatabaseError as exc:
            raise store_unavailable(exc) from None
        if not rows:
            raise ResponseNotFoundError(response_id, "previous_response_id")
        kept = [message for (messages,) in rows for message in KEPT_DECODER.decode(messages)]
        return [StoredMessage(seq, m.role, bytes(m.body), 0.0, m.incomplete) for seq, m in enumerate(kept)]

    async def body(self, response_id: str, owner: str) -> bytes:
        await self.conversations.ready()
        rows = await self.conversations.store.db.fetch(
            "SELECT body FROM responses WHERE id = ? AND owner = ? AND created_us >= ?",
            response_id,
            owner,
            self.since(),
        )
        if not rows:
            raise ResponseNotFoundError(response_id)
        return str(rows[0][0]).encode()

    async def delete(self, response_id: str, owner: str) -> None:
        await self.conversations.ready()
        if not await self.conversations.store.db.execute(
            "DELETE FROM responses WHERE id = ? AND owner = ?", response_id, owner
        ):
            raise ResponseNotFoundError(response_id)

    async def save(self, row: tuple[str, str, str | None, int, str, str]) -> None:
        """Keep one response, retrying a failing database a few times before giving up loudly."""
        for delay in (*STORE_RETRY_DELAYS, None):
            try:
                await self.conversations.ready()
                await self.conversations.store.db.execute(
                    "INSERT INTO responses (id, owner, previous_id, created_us, messages, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    *row,
                )
                await self.purge()
                return
            except DatabaseError as exc:
                if delay is None:
                    log.error("response_store_failed", response_id=row[0], error=str(exc))
                    return
                await asyncio.sleep(delay)

    async def purge(self) -> None:
        """Drop the responses past their time, at most once an hour (reads ignore them meanwhile)."""
        if time.monotonic() - self.purged < PURGE_EVERY_SECONDS:
            return
        self.purged = time.monotonic()
        await self.conversations.store.db.execute("DELETE FROM responses WHERE created_us < ?", self.since())


class ResponseKeeper:
    """One stored response in the making: its input, and its answer as it streams."""

    def __init__(
        self,
        responses: StoredResponses,
        answer_id: str,
        owner: str,
        previous_id: str | None,
        new: list[Message],
        renderer: Renderer,
    ):
        self.responses, self.answer_id, self.owner, self.previous_id = responses, answer_id, owner, previous_id
        self.new, self.renderer = new, renderer
        self.created_us = time.time_ns() // 1000
        self.builder: AnswerBuilder | None = None
        self.ended = False

    def capture(self, events: AsyncGenerator[Event, None], verbatim: bool = False) -> AsyncGenerator[Event, None]:
        """The events unchanged; the gateway's own answers are added to this attempt's answer. An
        answer relayed as OpenAI sent it is OpenAI's to keep, under OpenAI's id."""
        self.builder = None if verbatim else AnswerBuilder()
        return events if self.builder is None else adding(events, self.builder)

    async def finish(self, outcome: Outcome | None, model: str | None, error: str | None) -> None:
        """Keep the response before the client hears its end, so a next turn finds it; but a store that
        is slow or down (its retries take seconds) holds the end of an answer no longer than FINISH_WAIT:
        the client did not ask for storage, it is only on by default."""
        task = self.end(outcome, model, error)
        if task is not None:
            await asyncio.wait({task}, timeout=FINISH_WAIT)  # never cancels the store itself

    def end(self, outcome: Outcome | None, model: str | None, error: str | None) -> asyncio.Task[None] | None:
        if self.ended or outcome is None or self.builder is None:
            return None
        self.ended = True
        messages = [KeptMessage(message_role(m), msgspec.Raw(JSON_ENCODER.encode(m))) for m in self.new]
        messages += [
            KeptMessage(m.role, msgspec.Raw(m.body), m.incomplete)
            for m in answer_messages(self.builder, outcome, model, error)
        ]
        body = self.renderer.kept(self.builder, self.answer_id, outcome, error)
        row = (
            self.answer_id,
            self.owner,
            self.previous_id,
            self.created_us,
            JSON_ENCODER.encode(messages).decode(),
            body.decode(),
        )
        return self.responses.conversations.spawn(self.responses.save(row))
