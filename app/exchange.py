"""One chat request from its body to its last byte, the same for streamed and whole answers.

- A watcher listens for the client's disconnect from the start; when the client leaves, the work is
  cancelled and the upstream response closed (its connection is dropped, not pooled).
- Attempts: each deployment of the plan in turn, each retried with backoff, while nothing of the
  answer has reached the client. 400, 401, 403 and 404 are never retried.
- One watchdog per request enforces the timeouts on events (first token, idle between content
  events, total), sends keep-alive comments while the stream is silent, and ends streams when the
  shutdown grace period is over (``app/watchdog.py``). The per-chunk path only stamps the time.
- The status is committed when an upstream answers, or when the first keep-alive is due; before
  that a failure is an error response with its own status, after it an error event.

Only two things differ between the APIs that use it: the encoder (OpenAI chunks, native named
events, WebSocket frames) and the outlet (an HTTP response, or one request on a WebSocket).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator

import msgspec
import structlog
from starlette.types import Message, Receive, Scope, Send

from app import metrics
from app.completion import CompletionBuilder
from app.conversations.answers import Outcome
from app.conversations.turns import Turn
from app.errors import REQUEST_ID_KEY, ApiError
from app.gateway import Gateway
from app.middleware import AccessRecord
from app.native import Summary
from app.outlets import SERVER_SEND_KEY, HttpOutlet, Outlet, StreamEncoder, WholeAnswer
from app.tool_loop import ToolLoop
from app.watchdog import Watchdog
from providers.base import (
    CONTENT_EVENTS,
    Deployment,
    Event,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    Start,
    StreamTruncatedError,
    UpstreamAuthError,
)
from providers.request import ChatRequest
from providers.router import Plan

NOT_RETRIED = (InvalidRequestError, UpstreamAuthError, ModelNotFoundError)
TIMEOUT_NAMES = {"first_token": "first-token", "idle": "idle", "total": "total"}
log = structlog.get_logger("gateway")


class Exchange(Watchdog):
    def __init__(
        self,
        gateway: Gateway,
        chat: ChatRequest,
        plan: Plan,
        record: AccessRecord,
        answer_id: str,
        encoder: StreamEncoder,
        whole: WholeAnswer,
        turn: Turn | None = None,
        tools: ToolLoop | None = None,
    ):
        self.gateway, self.chat, self.plan, self.record = gateway, chat, plan, record
        self.turn = turn  # a turn on a stored conversation, which stores the answer when it ends
        self.tools = tools  # the loop that runs the model's MCP tool calls, when it was offered any
        self.encoder, self.whole, self.answer_id = encoder, whole, answer_id
        self.outlet: Outlet = HttpOutlet(_never_send, _never_send)
        self.request_id = ""
        self.reliability = gateway.config.reliability
        self.started = self.last_sent = time.monotonic()
        self.role_sent = self.first_content = self.client_gone = False
        self.last_content = self.attempt_started = 0.0
        self.timeouts = self.reliability.timeouts
        self.deployment: Deployment | None = None
        self.attempt_task: asyncio.Task[None] | None = None
        self.expired: str | None = None
        self.stop: str | None = None
        self.wakeup: asyncio.Future[None] | None = None  # the watchdog sleeps on this until its deadline
        self.main_task: asyncio.Task[None] | None = None
        self.phase = "connecting"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As an HTTP response: the request's own task does the work; a watcher cancels it if the client goes."""
        self.request_id = str(scope.get(REQUEST_ID_KEY, ""))
        watcher = asyncio.ensure_future(self.watch_client(receive))
        try:
            await self.serve(HttpOutlet(send, scope.get(SERVER_SEND_KEY, send)), self.request_id)
        finally:
            watcher.cancel()

    async def serve(self, outlet: Outlet, request_id: str) -> None:
        """Runs the exchange into ``outlet``; returns quietly when the client cancelled it."""
        self.outlet, self.request_id = outlet, request_id
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
        if self.record.error is not None and self.chat.stream and self.first_content:
            return "failed"
        return None

    def cancel(self) -> None:
        """The client left or asked to stop: cancel the work, which closes the upstream."""
        if self.phase != "done" and self.main_task is not None:
            self.client_gone = True
            self.record.cancelled = self.phase
            self.main_task.cancel()

    async def watch_client(self, receive: Receive) -> None:
        """Cancels the request's work the moment the client goes; the body is already read."""
        message: Message = {"type": ""}
        while message["type"] != "http.disconnect":
            message = await receive()
        self.cancel()

    async def run(self) -> None:
        self.main_task = asyncio.current_task()
        watchdog = asyncio.ensure_future(self.watch())
        try:
            await self.attempts()
        except asyncio.CancelledError:
            if self.client_gone or self.stop is None:
                raise
            await self.fail(self.stopped_error())
        except Exception:
            log.exception("exchange_failed", chunks=self.record.chunks)
            await self.fail(
                ApiError(
                    500,
                    "The gateway failed on this request; this is a bug on our side. Report it with the request id.",
                    code="internal_error",
                    type="server_error",
                )
            )
        finally:
            watchdog.cancel()

    async def attempts(self) -> None:
        error: ProviderError | None = None
        retries = self.plan.retries if self.plan.retries is not None else self.reliability.retries
        order = self.gateway.balancer.order(self.plan.deployments, self.plan.strategy)
        for position, deployment in enumerate(order):
            for attempt in range(retries + 1):
                if attempt:  # a retry of this deployment waits; a fallback to the next one does not
                    if error is None or not await self.pause(error):
                        break
                    self.record.retries += 1
                    self.record.retry_kinds.append(error.code)
                self.record.fallback = position > 0
                try:
                    await self.attempt(deployment)
                    return
                except ProviderError as exc:
                    error = exc
                    # Once the answer began, a retry would repeat what the client saw, or run tools twice.
                    began = self.first_content and (self.chat.stream or self.tools is not None)
                    if isinstance(exc, NOT_RETRIED) or began:
                        await self.fail(ApiError.from_provider(exc))
                        return
            else:
                continue
            break  # out of time: no further deployment either
        assert error is not None
        await self.fail(ApiError.from_provider(error))

    async def pause(self, error: ProviderError) -> bool:
        """Backoff before a retry: the upstream's Retry-After (capped), else exponential with full jitter.

        False when the wait would outlast the total timeout: then there is no time for another attempt.
        """
        backoff = self.reliability.backoff
        if error.retry_after is not None:
            delay = min(error.retry_after, self.reliability.retry_after_cap)
        else:
            delay = random.uniform(0, min(backoff.max, backoff.base * 2**self.record.retries))
        if time.monotonic() + delay >= self.started + (self.timeouts.total or float("inf")):
            return False
        await asyncio.sleep(delay)
        return True

    async def attempt(self, deployment: Deployment) -> None:
        merged = self.gateway.timeouts_for(deployment, self.plan.timeouts)
        deployment = msgspec.structs.replace(deployment, timeouts=merged)
        self.timeouts, self.deployment, self.expired = merged, deployment, None
        self.record.deployment = f"{deployment.provider}/{deployment.model}"
        self.record.provider, self.record.upstream_model = deployment.provider, deployment.model
        provider = self.gateway.router.provider(deployment)
        if self.tools is not None:
            events = self.tools.run(provider, self.chat, deployment)
        else:
            events = provider.stream(self.chat, deployment)
        if self.turn is not None:
            events = self.turn.capture(events)
        self.attempt_started, self.phase = time.monotonic(), "connecting"
        self.attempt_task = task = asyncio.ensure_future(
            self.relay(events) if self.chat.stream else self.collect(events)
        )
        self.poke()
        self.gateway.balancer.started(deployment)
        failed = True
        try:
            await task
            failed = False
        except asyncio.CancelledError:
            failed = self.expired is not None
            if not failed or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            raise self.timeout_error() from None
        finally:
            self.attempt_task = None
            self.gateway.balancer.finished(deployment, failed=failed)

    async def relay(self, events: AsyncGenerator[Event, None]) -> None:
        """The streamed answer: each event to the client as it arrives."""
        encoder = self.encoder
        try:
            async for event in events:
                if type(event) is Start:
                    await self.on_start()
                    continue
                if isinstance(event, CONTENT_EVENTS):
                    self.mark_content()
                body = encoder.encode(event)
                if body is not None:
                    await self.write(body)
            if not encoder.finished:
                raise StreamTruncatedError
            self.record.account(encoder.usage, encoder.finish)
            if self.turn is not None:
                await self.turn.finish("complete", self.record.deployment, None)
            await self.outlet.close(encoder.end(self.summary()))
            self.phase = "done"
        finally:
            await events.aclose()

    async def collect(self, events: AsyncGenerator[Event, None]) -> None:
        """The whole answer, sent once it is complete."""
        builder = CompletionBuilder()
        self.phase = "non_streaming"
        try:
            async for event in events:
                if isinstance(event, CONTENT_EVENTS):
                    self.mark_content()
                builder.add(event)
        finally:
            await events.aclose()
        if builder.finish is None:
            raise StreamTruncatedError
        self.record.account(builder.usage, builder.finish)
        if self.turn is not None:
            await self.turn.finish("complete", self.record.deployment, None)
        headers = [(b"content-type", b"application/json"), *self.deployment_header()]
        await self.outlet.respond(200, headers, self.whole(builder, self.summary()))
        self.phase = "done"

    def mark_content(self) -> None:
        self.last_content = self.last_sent = time.monotonic()
        if not self.first_content:
            self.first_content = True
            self.phase = "streaming" if self.chat.stream else self.phase
            self.record.mark_first_token()
            self.poke()

    async def on_start(self) -> None:
        if not self.outlet.committed:
            await self.commit(self.deployment_header())
        if not self.role_sent:
            self.role_sent = True
            opening = self.encoder.opening()
            if opening is not None:
                await self.write(opening)
        self.phase = "waiting_first_token"

    async def commit(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.record.streamed = True
        await self.outlet.commit(headers)

    async def write(self, frame: bytes) -> None:
        await self.outlet.write(frame)
        self.record.chunks += 1

    def summary(self) -> Summary:
        provider = self.deployment.provider if self.deployment else None
        duration = round((time.perf_counter() - self.record.start) * 1000, 2)
        return Summary(self.answer_id, self.chat.model, provider, self.record.ttft_ms, duration)

    async def fail(self, error: ApiError) -> None:
        """Before the status is committed, an error response with its own status; after, an error event."""
        self.record.error = error.code
        if self.turn is not None and not self.client_gone:
            await self.turn.finish(self.turn_outcome(), self.record.deployment, error.code)
        if not self.outlet.committed:
            headers = [(b"content-type", b"application/json")]
            headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
            await self.outlet.respond(error.status, headers, error.envelope(self.request_id))
        else:
            await self.outlet.close([self.encoder.error(error, self.request_id)])
        self.phase = "done"  # the server now reports a disconnect for the finished response: not a client leaving

    def deployment_header(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-gateway-deployment", self.record.deployment.encode())] if self.record.deployment else []


async def _never_send(message: Message) -> None:
    raise RuntimeError("the exchange has no outlet yet")
