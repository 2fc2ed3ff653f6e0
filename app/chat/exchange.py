"""One chat request from its admission to its last byte, the same for streamed and whole answers.

- Attempts: each deployment of the plan in turn, each retried with backoff, while nothing of the
  answer has reached the client. 400, 401, 403 and 404 are never retried.
- Its ``Deadlines`` enforce the timeouts on events (first token, idle between content events,
  total), ask for keep-alive comments while the stream is silent, and end it when the shutdown grace
  period is over. The per-chunk path only stamps the time.
- The status is committed when an upstream answers, or when the first keep-alive is due; before
  that a failure is an error response with its own status, after it an error event.
- ``cancel`` (the client left, or asked to stop) cancels the work, which closes the upstream response
  (its connection is dropped, not pooled).

Two things differ between the APIs that use it: the dialect (OpenAI chunks, native named events,
WebSocket frames) and the outlet (an HTTP response, or one request on a WebSocket).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import msgspec
import structlog

from app.chat.deadlines import Deadlines
from app.chat.hedge import Race
from app.chat.outlets import Headers, HttpOutlet, Outlet
from app.chat.rescue import Rescue
from app.chat.retrying import NOT_RETRIED, asks_for_reasoning, retry_delay, with_retry_hint
from app.conversations.answers import Keeper, Outcome
from app.dialects.answer import AnswerBuilder
from app.dialects.base import Dialect, StreamEncoder, Summary
from app.dialects.verbatim import VerbatimEncoder
from app.errors import ApiError
from app.http.access import AccessRecord
from app.ops import metrics
from app.services import Services
from app.tools.loop import ToolLoop
from providers.base import (
    CONTENT_EVENTS,
    ContextLengthError,
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

INTERNAL_ERROR = ApiError(
    500,
    "The gateway failed on this request; this is a bug on our side. Report it with the request id.",
    code="internal_error",
    type="server_error",
)
log = structlog.get_logger("gateway")


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


class Exchange:
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

    async def serve(self, outlet: Outlet, request_id: str) -> None:
        """Runs the exchange into ``outlet``; returns quietly when the client cancelled it."""
        self.outlet, self.request_id = outlet, request_id
        self.deadlines = Deadlines(self.reliability, keepalive=bool(self.chat.stream) and outlet.keepalive is not None)
        metrics.ACTIVE.inc()
        try:
            await self.run()
        except asyncio.CancelledError:
            if not self.client_gone:
                raise  # the server is cancelling us, not the client leaving
        finally:
            metrics.ACTIVE.dec()
            if self.turn is not None:
                self.turn.end(self.turn_outcome(), self.record.deployment, self.record.error)

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

    def cancel(self) -> None:
        """The client left or asked to stop: cancel the work, which closes the upstream."""
        if self.phase != "done" and self.main_task is not None:
            self.client_gone = True
            self.record.cancelled = self.phase
            if not self.outlet.committed:
                self.record.status = 499  # no status was sent: the access line says the client left, not a 500
            self.main_task.cancel()

    async def run(self) -> None:
        self.main_task = asyncio.current_task()
        watcher = asyncio.ensure_future(self.deadlines.watch(self.on_due))
        try:
            await self.attempts()
        except asyncio.CancelledError:
            if self.client_gone or self.deadlines.stop is None:
                raise
            await self.fail(self.deadlines.stopped_error(self.provider_name()))
        except Exception:
            log.exception("exchange_failed", chunks=self.record.chunks)
            await self.fail(INTERNAL_ERROR)
        finally:
            watcher.cancel()

    async def on_due(self, what: str) -> None:
        """A deadline came: keep the stream alive, end the attempt in flight, or end the whole exchange."""
        if what == "keepalive":
            if not self.outlet.committed:
                await self.commit([])
            await self.write(self.outlet.keepalive or b"")
        elif what in ("total", "shutdown"):
            if self.main_task is not None:
                self.main_task.cancel()  # through the attempt in flight, which closes its upstream
        elif self.attempt_task is not None:
            self.attempt_task.cancel()

    async def attempts(self) -> None:
        """The plan's deployments until one answers (see ``on``); a prompt too long for them goes to the
        alias's context fallbacks, in order, and without them it is the upstream's clean 400."""
        outcome = await self.through(self.plan, larger=False)
        for name in self.plan.context_fallbacks if outcome == "too_long" else ():
            try:
                plan = self.services.router.resolve(name)
            except ProviderError:
                continue  # its provider is not enabled here; start-up checked the name itself
            self.plan = plan
            self.record.notes = {**(self.record.notes or {}), "context_fallback": name}
            outcome = await self.through(plan, larger=True)
            if outcome != "too_long":
                break
        if outcome in ("next", "too_long"):
            assert self.error is not None
            await self.fail(ApiError.from_provider(self.hinted(self.error)))

    async def through(self, plan: Plan, *, larger: bool) -> str:
        """Each of the plan's deployments in the balancer's order, until one ends the exchange."""
        retries = plan.retries if plan.retries is not None else self.reliability.retries
        usable = self.usable_deployments(plan)
        if not usable:  # a context fallback that cannot take what only the client's dialect carries
            return "too_long"
        order = self.order = self.services.balancer.order(usable, plan.strategy)
        # The alias's first choice: for "fallback", its first deployment even while that one cools down.
        primary = usable[0] if plan.strategy == "fallback" else order[0]
        outcome = "next"
        for deployment in order:
            if self.rescue is not None and self.rescue.active:
                if f"{deployment.provider}/{deployment.model}" == self.rescue.broken:
                    continue
                retries = 0  # a continuation is asked of each deployment once
            outcome = await self.on(deployment, larger or deployment != primary, retries, alone=len(order) == 1)
            if outcome not in ("next", "rescue"):
                break
        return "next" if outcome == "rescue" else outcome

    async def on(self, deployment: Deployment, fallback: bool, retries: int, *, alone: bool) -> str:
        """Attempts on one deployment: ``done`` (answered, or failed for good), ``next`` (try the next one),
        ``too_long`` (the prompt does not fit: never retried unchanged) or ``out_of_time``.

        A fast failure (refused, 5xx, 429) is retried with backoff, ``retries`` times. A silent one
        (no first token in time, or a stream that answered and then died before its first token) moves
        to the next deployment at once; a lone deployment gets one more try after it, and no more.
        """
        for attempt in range(retries + 1):
            if attempt:  # a retry of this deployment waits; a fallback to the next one does not
                assert self.error is not None
                if not await self.pause(self.error):  # no time left for it, nor for another deployment
                    await self.fail(ApiError.from_provider(self.hinted(self.error)))
                    return "out_of_time"
                self.record.retries += 1
                self.record.retry_kinds.append(self.error.code)
            self.record.fallback = fallback
            try:
                await self.attempt(deployment)
                return "done"
            except ProviderError as exc:
                self.error = exc
                # Once the answer began, a retry would repeat what the client saw, or run tools twice.
                began = self.deadlines.first_content and (self.chat.stream or self.tools is not None)
                if began and self.rescue is not None and self.encoder is self.framing:
                    return await self.rescued_or_not(exc, deployment)
                if isinstance(exc, ContextLengthError) and not began:
                    return "too_long"
                if isinstance(exc, NOT_RETRIED) or began:
                    await self.fail(ApiError.from_provider(exc))
                    return "done"
                if self.silent and (not alone or attempt > 0):
                    return "next"
        return "next"

    async def rescued_or_not(self, error: ProviderError, deployment: Deployment) -> str:
        """A failure after the answer began, on an alias that can rescue it: the next deployment continues
        it (``rescue``), or the client gets the error; a continuation that failed before any of it
        arrived leaves the original error to tell (``next``)."""
        rescue = self.rescue
        assert rescue is not None
        if rescue.active and not rescue.after:
            assert rescue.original is not None
            self.error = rescue.original
            return "next"
        if not rescue.can_take(error):
            await self.fail(ApiError.from_provider(error))
            return "done"
        rescue.take(error, deployment)
        self.deadlines.restart_idle()  # the continuation's first text is bounded from now
        return "rescue"

    def hinted(self, error: ProviderError) -> ProviderError:
        return with_retry_hint(error, self.reliability, self.record.retries)

    def usable_deployments(self, plan: Plan) -> list[Deployment]:
        """The plan's deployments; only those that speak the client's dialect for a request that
        holds what the gateway cannot translate (the intake made sure the alias has one)."""
        original, router = self.ticket.original, self.services.router
        if self.ticket.untranslatable is None or original is None:
            return plan.deployments
        return [d for d in plan.deployments if router.same_dialect(d, original.dialect) is not None]

    async def pause(self, error: ProviderError) -> bool:
        """Backoff before a retry: the upstream's Retry-After (capped), else exponential with full jitter.

        False when the wait would outlast the total timeout: then there is no time for another attempt.
        """
        delay = retry_delay(error, self.reliability, self.record.retries)
        if delay >= self.deadlines.total_left():
            return False
        await asyncio.sleep(delay)
        return True

    async def attempt(self, deployment: Deployment) -> None:
        beside = self.next_in_order(deployment)
        merged = self.services.timeouts_for(deployment, self.plan.timeouts, thinking=asks_for_reasoning(self.chat))
        self.deployment = deployment = msgspec.structs.replace(deployment, timeouts=merged)
        self.record.deployment = f"{deployment.provider}/{deployment.model}"
        self.record.provider, self.record.upstream_model = deployment.provider, deployment.model
        events = self.events(deployment)
        self.answered_by(deployment.model)
        if beside is not None and self.may_hedge():
            events = self.hedged(events, deployment, beside)
        if self.rescue is not None:
            events = self.rescue.capture(events)
        if self.turn is not None:
            events = self.turn.capture(events, verbatim=isinstance(self.encoder, VerbatimEncoder))
        self.phase, self.answered, self.silent = "connecting", False, False
        self.attempt_task = task = asyncio.ensure_future(
            self.relay(events) if self.chat.stream else self.collect(events)
        )
        self.deadlines.attempt(merged)
        self.services.balancer.started(deployment)
        failed = True
        try:
            await task
            failed = False
        except asyncio.CancelledError:
            failed = self.deadlines.expired is not None
            if not failed or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            raise self.deadlines.timeout_error(deployment.provider) from None
        except ProviderError:
            self.silent = self.answered and not self.deadlines.first_content
            raise
        finally:
            if self.deadlines.expired == "first_token":
                self.silent = True
            self.attempt_task = None
            self.deadlines.attempt_over()
            self.services.balancer.finished(deployment, failed=failed)
            if isinstance(self.encoder, VerbatimEncoder):
                self.opened = self.opened or self.encoder.opened

    def next_in_order(self, deployment: Deployment) -> Deployment | None:
        position = self.order.index(deployment) if deployment in self.order else -1
        return self.order[position + 1] if 0 <= position < len(self.order) - 1 else None

    def may_hedge(self) -> bool:
        """Whether this attempt may be raced by the next deployment: the alias hedges, and the request
        is the gateway's own (no MCP tools, not relayed as it came, not a rescue)."""
        if self.plan.hedge_after_seconds is None or self.tools is not None or self.encoder is not self.framing:
            return False
        return not self.deadlines.first_content and not (self.rescue is not None and self.rescue.active)

    def hedged(
        self, events: AsyncGenerator[Event, None], first: Deployment, second: Deployment
    ) -> AsyncGenerator[Event, None]:
        """The first deployment's events, raced by the second's once it has been slow to its first content."""
        thinking = asks_for_reasoning(self.chat)
        second = msgspec.structs.replace(
            second, timeouts=self.services.timeouts_for(second, self.plan.timeouts, thinking=thinking)
        )

        def start() -> AsyncGenerator[Event, None]:
            self.services.balancer.started(second)
            return self.services.router.provider(second).stream(self.chat, second)

        def won(index: int) -> None:
            if not race.hedged:
                return
            self.services.balancer.finished(second, failed=False)
            winner, loser = (second, first) if index else (first, second)
            if index:
                self.deployment = second
                self.record.deployment = f"{second.provider}/{second.model}"
                self.record.provider, self.record.upstream_model = second.provider, second.model
                self.record.fallback = True
                self.answered_by(second.model)
            self.record.notes = {
                **(self.record.notes or {}),
                "hedged": {
                    "after_seconds": self.plan.hedge_after_seconds,
                    "winner": f"{winner.provider}/{winner.model}",
                    "cancelled": f"{loser.provider}/{loser.model}",
                },
            }

        assert self.plan.hedge_after_seconds is not None
        race = Race(self.plan.hedge_after_seconds, start, won)
        return race.run(events)

    def events(self, deployment: Deployment) -> AsyncGenerator[Event, None]:
        """The attempt's events: the client's own request to an upstream that speaks its dialect, else
        the canonical one; through the tool loop when the model was offered MCP tools."""
        original = self.ticket.original
        same = self.services.router.same_dialect(deployment, original.dialect) if original else None
        self.encoder = self.framing
        if self.rescue is not None and self.rescue.active:
            provider = self.services.router.provider(deployment)
            return provider.stream(self.rescue.request(self.chat, getattr(provider, "prefill", False)), deployment)
        if same is None:
            provider = self.services.router.provider(deployment)
            if self.tools is not None:
                return self.tools.run(lambda chat: provider.stream(chat, deployment), self.chat)
            return provider.stream(self.chat, deployment)
        if self.tools is not None:
            return self.tools.run(lambda chat: same.stream(chat, deployment, original), self.chat)
        if original is not None and original.verbatim:
            self.encoder = VerbatimEncoder(self.framing, self.opened)
        return same.stream(self.chat, deployment, original)

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
