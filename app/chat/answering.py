"""The answer's side of an exchange: its state, and what reaches the client of each attempt.

``relay`` writes a streamed answer's events as they arrive and ``collect`` sends a whole one once it is
complete; the status is committed when an upstream answers (``on_start``) or a keep-alive is due, and a
failure is then an error event, before it an error response with its own status (``fail``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from app.chat.deadlines import Deadlines
from app.chat.outlets import Headers, HttpOutlet, Outlet
from app.chat.rescue import Rescue
from app.conversations.answers import Keeper, Outcome
from app.dialects.answer import AnswerBuilder
from app.dialects.base import Dialect, StreamEncoder, Summary
from app.errors import ApiError
from app.http.access import AccessRecord
from app.services import Services
from app.tools.loop import ToolLoop
from providers.base import (
    CONTENT_EVENTS,
    Deployment,
    Event,
    Original,
    ProviderError,
    Start,
    StreamTruncatedError,
    UpstreamModel,
)
from providers.request import ChatRequest
from providers.router import Plan


class Ticket:
    """What the intake hands the exchange: the request as it goes upstream, and what comes with it."""

    __slots__ = ("answer_id", "chat", "original", "plan", "record", "tools", "turn", "untranslatable")

    def __init__(
        self,
        chat: ChatRequest,
        plan: Plan,
        record: AccessRecord,
        answer_id: str,
        turn: Keeper | None = None,
        tools: ToolLoop | None = None,
        original: Original | None = None,
        untranslatable: ApiError | None = None,
    ):
        self.chat, self.plan, self.record, self.answer_id = chat, plan, record, answer_id
        self.turn = turn  # keeps the answer when it ends: a conversation's turn, or a stored response
        self.tools = tools  # the loop that runs the model's MCP tool calls, when it was offered any
        # The client's request as it came, for deployments that speak its dialect; when ``untranslatable``
        # says what of it only they can take, the other deployments are skipped.
        self.original, self.untranslatable = original, untranslatable


async def _never_send(message: object) -> None:
    raise RuntimeError("the exchange has no outlet yet")


class Answering:
    """What the exchange knows of its request and its answer, and how the answer reaches the client."""

    def __init__(self, services: Services, ticket: Ticket, dialect: Dialect):
        self.services, self.ticket, self.dialect = services, ticket, dialect
        self.chat, self.plan, self.record = ticket.chat, ticket.plan, ticket.record
        self.turn, self.tools = ticket.turn, ticket.tools
        self.framing = dialect.stream(ticket.chat, ticket.answer_id)
        self.encoder: StreamEncoder = self.framing  # per attempt: the framing, or the upstream's own bytes
        self.reliability = services.config.reliability
        self.outlet: Outlet = HttpOutlet(_never_send, _never_send)
        self.deadlines = Deadlines(self.reliability, keepalive=False)
        self.request_id = ""
        self.opened = self.client_gone = False  # opened: the answer's opening event reached the client
        self.deployment: Deployment | None = None
        self.attempt_task: asyncio.Task[None] | None = None
        self.main_task: asyncio.Task[None] | None = None
        self.phase = "connecting"
        self.error: ProviderError | None = None  # the last attempt's failure
        self.answered = False  # the attempt's upstream answered (its headers came)
        self.silent = False  # the last attempt failed without a first token: timed out, or died after answering
        self.served = ticket.chat.model  # the model answering: the deployment's, then the upstream's own name
        self.opening_due = False  # the upstream answered; its opening frame goes out with its first event
        self.order: list[Deployment] = []  # the deployments of the plan being tried, in the balancer's order
        rescuable = self.chat.stream and self.tools is None and self.plan.midstream == "rescue"
        self.rescue = Rescue() if rescuable and len(self.plan.deployments) > 1 else None

    def turn_outcome(self) -> Outcome | None:
        """What a stored conversation keeps of this answer: all of it, what the client saw, or nothing.

        A failure before any of a stream reached the client keeps nothing: the client saw an error
        status and will send the same message again.
        """
        if self.client_gone:
            return "cancelled"
        if self.record.error is None and self.phase == "done":
            return "complete"
        if self.record.error is not None and self.chat.stream and self.deadlines.first_content:
            return "failed"
        return None

    async def relay(self, events: AsyncGenerator[Event, None]) -> None:
        """The streamed answer: each event to the client as it arrives."""
        encoder = self.encoder
        try:
            async for event in events:
                kind = type(event)
                if kind is Start:
                    await self.on_start()
                    continue
                if kind is UpstreamModel:
                    self.answered_by(event.name)  # type: ignore[union-attr]  # the type was just checked
                if self.opening_due:  # after the upstream's first event, which may name its model
                    await self.send_opening()
                if kind is UpstreamModel:
                    continue
                if isinstance(event, CONTENT_EVENTS):
                    self.mark_content()
                body = encoder.encode(event)
                if body is not None:
                    await self.write(body)
            if not encoder.finished:
                raise StreamTruncatedError
            self.record.account(encoder.usage, encoder.finish)
            if self.rescue is not None and self.rescue.active and self.deployment is not None:
                self.record.notes = {**(self.record.notes or {}), "rescued": self.rescue.note(self.deployment)}
            closing = encoder.end(self.summary())
            if self.turn is not None:
                await self.turn.finish("complete", self.record.deployment, None)
            await self.outlet.close(closing)
            self.ended()
        finally:
            await events.aclose()

    async def collect(self, events: AsyncGenerator[Event, None]) -> None:
        """The whole answer, sent once it is complete."""
        answer = AnswerBuilder()
        self.phase = "non_streaming"
        try:
            async for event in events:
                if isinstance(event, CONTENT_EVENTS):
                    self.mark_content()
                elif type(event) is Start:
                    self.answered = True
                answer.add(event)
        finally:
            await events.aclose()
        if answer.finish is None:
            raise StreamTruncatedError
        if answer.model is not None:
            self.answered_by(answer.model)
        self.record.account(answer.usage, answer.finish)
        headers = [(b"content-type", b"application/json"), *self.deployment_header()]
        body = answer.verbatim if answer.verbatim is not None else self.dialect.whole(answer, self.summary())
        if self.turn is not None:
            await self.turn.finish("complete", self.record.deployment, None)
        await self.outlet.respond(200, headers, body)
        self.ended()

    def answered_by(self, model: str) -> None:
        """The model the client is told answered: the deployment's, then the upstream's own name for it."""
        self.served = model
        self.encoder.serve(model)

    def mark_content(self) -> None:
        if self.deadlines.content():
            self.phase = "streaming" if self.chat.stream else self.phase
            self.record.mark_first_token()

    async def on_start(self) -> None:
        """The upstream answered: the status goes now, the opening with the upstream's first event."""
        self.answered = True
        if not self.outlet.committed:
            await self.commit(self.deployment_header())
        self.opening_due = not self.opened
        self.phase = "waiting_first_token"

    async def send_opening(self) -> None:
        self.opening_due = False
        opening = self.encoder.opening()
        if opening is not None:
            self.opened = True
            await self.write(opening)

    async def commit(self, headers: Headers) -> None:
        self.record.streamed = True
        await self.outlet.commit(headers)

    async def write(self, frame: bytes) -> None:
        await self.outlet.write(frame)
        self.record.chunks += 1

    def ended(self) -> None:
        # From here the server reports a disconnect for the finished response: not a client leaving.
        self.phase = "done"
        self.deadlines.done()

    def provider_name(self) -> str | None:
        return self.deployment.provider if self.deployment else None

    def summary(self) -> Summary:
        duration = round((time.perf_counter() - self.record.start) * 1000, 2)
        rescued = self.record.notes.get("rescued") if self.record.notes else None
        assert rescued is None or isinstance(rescued, dict)
        return Summary(self.ticket.answer_id, self.served, self.provider_name(), self.record.ttft_ms, duration, rescued)

    async def fail(self, error: ApiError) -> None:
        """Before the status is committed, an error response with its own status; after, an error event."""
        self.record.error = error.code
        # The error is written first, so what a stored response keeps is what the client is told.
        frame = self.encoder.error(error, self.request_id)
        if self.turn is not None and not self.client_gone:
            await self.turn.finish(self.turn_outcome(), self.record.deployment, error.code)
        if not self.outlet.committed:  # a keep-alive may have committed it while the answer was kept
            response = self.dialect.error_response(error, self.request_id)
            await self.outlet.respond(response.status_code, response.raw_headers, bytes(response.body))
        else:
            await self.outlet.close([frame])
        self.ended()

    def deployment_header(self) -> Headers:
        return [(b"x-gateway-deployment", self.record.deployment.encode())] if self.record.deployment else []
