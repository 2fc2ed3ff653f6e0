"""A turn on a stored conversation: take the conversation, send its history upstream, store the answer.

- Before the upstream call: wait for any turn in flight on the same conversation (up to
  ``turn_wait_seconds``, then a 409), then load the window of history and place it after the
  request's system messages.
- While the answer streams: the events pass through ``Turn.capture``, which only appends them to a
  builder; requests without a conversation do not pass through it at all.
- After the answer: the new messages and the answer are stored, and the conversation released, in a
  task of their own, so the client's stream ends without waiting for the database.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

import msgspec
import structlog

from app.config import ConversationSettings
from app.conversations.answers import Outcome, adding, answer_messages
from app.conversations.database import DatabaseError
from app.conversations.history import replayable, window
from app.conversations.records import NewMessage, StoredMessage
from app.conversations.store import ConversationStore
from app.dialects.answer import AnswerBuilder
from app.errors import ApiError
from providers.base import Event
from providers.request import (
    JSON_ENCODER,
    ChatRequest,
    DeveloperMessage,
    Message,
    SystemMessage,
    UserMessage,
    message_role,
    message_text,
)

REOPEN_SECONDS = 5.0  # how often a store that could not be opened is tried again
LEASE_SECONDS = 60.0  # a turn's hold on its conversation, renewed every third of it while the gateway lives
STORE_RETRY_DELAYS = (0.1, 0.5, 2.0)
log = structlog.get_logger("gateway.conversations")


PING_SECONDS = 1.0


class Conversations:
    def __init__(self, store: ConversationStore, settings: ConversationSettings):
        self.store = store
        self.settings = settings
        self.instance = uuid.uuid4().hex[:16]  # this process's lease tokens start with it
        self.opening: asyncio.Task[None] | None = None
        self.failed_at = 0.0  # when opening the store last failed
        self.pending: set[asyncio.Task[None]] = set()  # turns being stored
        self.released: dict[str, asyncio.Event] = {}  # wakes this process's waiters for a conversation
        self.waiting: dict[str, int] = {}  # how many wait on each of those events
        self.held = 0
        self.renewer: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        """Open the database and bring its schema up to date, once; start-up does it, else the first use.

        A store that could not be opened is tried again, at most every REOPEN_SECONDS; in between,
        requests that need it fail at once with the same error instead of each waiting to connect.
        """
        opening = self.opening
        if opening is not None and opening.done() and (opening.cancelled() or opening.exception() is not None):
            if time.monotonic() - self.failed_at < REOPEN_SECONDS:
                await opening  # raises the error again
            opening = None
        if opening is None:
            self.opening = opening = asyncio.ensure_future(self.open())
        await asyncio.shield(opening)

    async def ping(self) -> bool:
        """Whether the database answers within a second (opening it first if it never was)."""
        try:
            async with asyncio.timeout(PING_SECONDS):
                await self.ready()
                await self.store.db.fetch("SELECT 1")
        except (DatabaseError, TimeoutError, OSError):
            return False
        return True

    async def open(self) -> None:
        try:
            await self.store.db.open()
            try:
                await self.store.migrate()
            except BaseException:
                await self.store.db.close()
                raise
        except BaseException:
            self.failed_at = time.monotonic()
            raise

    async def close(self) -> None:
        """Store what is pending, then close the database."""
        if self.pending:
            await asyncio.wait(self.pending, timeout=10)
        if self.renewer is not None:
            self.renewer.cancel()
        if self.opening is not None:
            self.opening = None
            await self.store.db.close()

    async def begin(self, chat: ChatRequest, conversation_id: str, owner: str) -> tuple[ChatRequest, Turn]:
        """The request with the conversation's history in it, and the turn that will store the answer."""
        await self.ready()
        token = f"{self.instance}/{uuid.uuid4().hex}"
        max_messages, max_tokens = self.settings.limits_for(chat.model)
        stored = await self.take(conversation_id, owner, token, max_messages)
        try:
            system, new = split_system(chat.messages)
            history = window(replayable(stored), [*system, *new], max_messages, max_tokens)
        except BaseException:
            self.spawn(self.release(conversation_id, token))
            raise
        chat = msgspec.structs.replace(chat, messages=[*system, *history, *new])
        return chat, Turn(self, conversation_id, token, new)

    async def take(self, conversation_id: str, owner: str, token: str, history: int) -> list[StoredMessage]:
        """Lease the conversation and read its history, waiting for a turn in flight; 404 if not the owner's."""
        deadline = time.monotonic() + self.settings.turn_wait_seconds
        delay = 0.02
        while True:
            try:
                outcome, stored = await self.store.take(
                    conversation_id, owner, token, time.time(), LEASE_SECONDS, history
                )
            except asyncio.CancelledError:
                # The client left with the trip in flight: the lease may be taken by now, and nobody would free it.
                self.spawn(self.abandon(conversation_id, token))
                raise
            if outcome == "acquired":
                self.held += 1
                if self.renewer is None or self.renewer.done():
                    self.renewer = asyncio.ensure_future(self.renew())
                return stored
            if outcome == "missing":
                raise conversation_not_found(conversation_id)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise conversation_busy(conversation_id, self.settings.turn_wait_seconds)
            # Turns on this process wake us when they end; turns on other replicas are polled for.
            event = self.released.setdefault(conversation_id, asyncio.Event())
            self.waiting[conversation_id] = self.waiting.get(conversation_id, 0) + 1
            try:
                await asyncio.wait_for(event.wait(), min(delay, remaining))
            except TimeoutError:
                delay = min(delay * 2, 0.5)
            finally:
                self.stop_waiting(conversation_id, event)

    async def renew(self) -> None:
        """Keep this process's leases alive while it holds any."""
        while self.held > 0:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await self.store.renew(f"{self.instance}/", time.time() + LEASE_SECONDS)
            except DatabaseError as exc:
                log.warning("conversation_lease_renewal_failed", error=str(exc))

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    def stop_waiting(self, conversation_id: str, event: asyncio.Event) -> None:
        """The last waiter gone, its event goes too: a turn released on another replica never sets it."""
        self.waiting[conversation_id] -= 1
        if self.waiting[conversation_id] == 0:
            del self.waiting[conversation_id]
            if self.released.get(conversation_id) is event:
                del self.released[conversation_id]

    def freed(self, conversation_id: str) -> None:
        self.held -= 1
        event = self.released.pop(conversation_id, None)
        if event is not None:
            event.set()

    async def abandon(self, conversation_id: str, token: str) -> None:
        """Free a lease this turn may hold but never counted: its trip was cancelled on the way back."""
        try:
            await self.store.release(conversation_id, token)
        except DatabaseError as exc:  # the lease then expires on its own
            log.error("conversation_release_failed", conversation_id=conversation_id, error=str(exc))

    async def release(self, conversation_id: str, token: str) -> None:
        try:
            await self.store.release(conversation_id, token)
        except DatabaseError as exc:  # the lease then expires on its own
            log.error("conversation_release_failed", conversation_id=conversation_id, error=str(exc))
        finally:
            self.freed(conversation_id)

    async def save(self, conversation_id: str, token: str, messages: list[NewMessage], title: str | None) -> None:
        """Append a turn's messages, retrying a failing database a few times before giving up loudly."""
        try:
            for delay in (*STORE_RETRY_DELAYS, None):
                try:
                    if not await self.store.append(conversation_id, token, messages, time.time(), title):
                        log.info("conversation_gone", conversation_id=conversation_id)
                    return
                except DatabaseError as exc:
                    if delay is None:
                        log.error("conversation_store_failed", conversation_id=conversation_id, error=str(exc))
                        return
                    await asyncio.sleep(delay)
        finally:
            self.freed(conversation_id)


class Turn:
    """One request's turn: what it adds to the conversation, and the answer as it streams."""

    def __init__(self, conversations: Conversations, conversation_id: str, token: str, new: list[Message]):
        self.conversations = conversations
        self.conversation_id = conversation_id
        self.token = token
        self.new = new
        self.builder = AnswerBuilder()
        self.ended = False

    def capture(self, events: AsyncGenerator[Event, None], verbatim: bool = False) -> AsyncGenerator[Event, None]:
        """The events unchanged, each added to this attempt's answer (a conversation's turn is never verbatim)."""
        self.builder = AnswerBuilder()
        return adding(events, self.builder)

    async def finish(self, outcome: Outcome | None, model: str | None, error: str | None) -> None:
        """Store the turn before the client hears the end of the answer, so what it reads next includes it.

        The store runs in its own task: a client that leaves meanwhile does not interrupt it.
        """
        task = self.end(outcome, model, error)
        if task is not None:
            await asyncio.shield(task)

    def end(self, outcome: Outcome | None, model: str | None, error: str | None) -> asyncio.Task[None] | None:
        """Store the turn in the background (None: the turn did not happen, so only release the conversation)."""
        if self.ended:
            return None
        self.ended = True
        conversations = self.conversations
        if outcome is None:
            return conversations.spawn(conversations.release(self.conversation_id, self.token))
        messages = [NewMessage(message_role(m), JSON_ENCODER.encode(m)) for m in self.new]
        messages += answer_messages(self.builder, outcome, model, error)
        return conversations.spawn(conversations.save(self.conversation_id, self.token, messages, self.title()))

    def title(self) -> str | None:
        """The first user message, as the title of a conversation that has none yet."""
        for message in self.new:
            if isinstance(message, UserMessage):
                return " ".join(message_text(message.content).split()) or None
        return None


def split_system(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """The request's leading system and developer messages, and the rest: the turn's new messages."""
    count = 0
    while count < len(messages) and isinstance(messages[count], SystemMessage | DeveloperMessage):
        count += 1
    return messages[:count], messages[count:]


def conversation_not_found(conversation_id: str) -> ApiError:
    return ApiError(
        404,
        f"No conversation {conversation_id[:128]!r} exists for this key. Create one with "
        "POST /api/v1/conversations, or list yours with GET /api/v1/conversations.",
        code="conversation_not_found",
        type="not_found_error",
        param="conversation_id",
    )


def conversation_busy(conversation_id: str, waited: float) -> ApiError:
    return ApiError(
        409,
        f"Conversation {conversation_id!r} is still answering another turn after {waited:g} s of waiting; "
        "a conversation answers one turn at a time. Retry when that turn has finished.",
        code="conversation_busy",
        param="conversation_id",
        headers={"Retry-After": "1"},
    )


def store_unavailable(exc: DatabaseError) -> ApiError:
    return ApiError(
        503,
        f"The gateway's conversation store is unavailable ({exc}). Retry shortly; requests without a "
        "conversation_id are not affected.",
        code="conversation_store_unavailable",
        type="server_error",
        headers={"Retry-After": "1"},
    )
