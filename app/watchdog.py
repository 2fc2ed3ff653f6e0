"""The exchange's timers, on events rather than on every chunk: one watchdog per request.

It enforces the timeouts (first token, idle between content events, total), sends keep-alive
comments while the stream is silent, and ends streams when the shutdown grace period is over. It
sleeps on one future with one timer until the nearest deadline, or until the exchange pokes it
because its state changed. ``Exchange`` holds the state; this mixin reads it and acts on it.
"""

from __future__ import annotations

import asyncio
import time

from app.config import Reliability
from app.errors import ApiError
from app.outlets import Outlet
from app.shutdown import SHUTDOWN
from providers.base import Deployment, Timeouts, UpstreamTimeoutError, UpstreamUnavailableError
from providers.request import ChatRequest


class Watchdog:
    chat: ChatRequest
    outlet: Outlet
    reliability: Reliability
    timeouts: Timeouts
    deployment: Deployment | None
    started: float
    last_sent: float
    last_content: float
    attempt_started: float
    first_content: bool
    phase: str
    expired: str | None  # the timeout that fired during the attempt in flight
    stop: str | None  # why the whole exchange was stopped: "total" or "shutdown"
    wakeup: asyncio.Future[None] | None
    main_task: asyncio.Task[None] | None
    attempt_task: asyncio.Task[None] | None

    async def commit(self, headers: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    async def write(self, frame: bytes) -> None:
        raise NotImplementedError

    def poke(self) -> None:
        """The state changed (an attempt began, the first token came, shutdown began): recompute deadlines."""
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def sleep_until(self, delay: float | None) -> None:
        """Until ``delay`` passes (forever if None) or until ``poke``; one future and one timer, no task."""
        loop = asyncio.get_running_loop()
        self.wakeup = loop.create_future()
        timer = loop.call_later(delay, self.poke) if delay is not None else None
        try:
            await self.wakeup
        finally:
            if timer is not None:
                timer.cancel()

    async def watch(self) -> None:
        """Sleeps until the nearest deadline, or until the state changes; then acts on what is due."""
        SHUTDOWN.listen(self)
        while True:
            due, what = self.next_deadline()
            delay = due - time.monotonic()
            if delay > 0:
                await self.sleep_until(delay)
                continue
            if what == "keepalive":
                if not self.outlet.committed:
                    await self.commit([])
                self.last_sent = time.monotonic()
                await self.write(self.outlet.keepalive or b"")
            elif what in ("total", "shutdown"):
                self.stop = self.expired = what
                if self.main_task is not None:
                    self.main_task.cancel()  # through the attempt in flight, which closes its upstream
                return
            else:
                self.expired = what
                if self.attempt_task is not None:
                    self.attempt_task.cancel()
                await self.sleep_until(None)  # until the next attempt begins

    def next_deadline(self) -> tuple[float, str]:
        timeouts, never = self.timeouts, float("inf")
        deadlines = [(self.started + (timeouts.total or never), "total")]
        if self.attempt_task is not None and self.expired is None:
            if self.first_content:
                deadlines.append((self.last_content + (timeouts.idle or never), "idle"))
            else:
                deadlines.append((self.attempt_started + (timeouts.first_token or never), "first_token"))
        if self.chat.stream and self.phase != "done" and self.outlet.keepalive is not None:
            deadlines.append((self.last_sent + self.reliability.keepalive_seconds, "keepalive"))
        if SHUTDOWN.started_at is not None:
            deadlines.append((SHUTDOWN.started_at + self.reliability.shutdown_grace_seconds, "shutdown"))
        return min(deadlines)

    def timeout_error(self) -> UpstreamTimeoutError:
        name = self.expired or "total"
        seconds = getattr(self.timeouts, name, None)
        what = {"first_token": "no first token", "idle": "no new token", "total": "no complete answer"}[name]
        provider = self.deployment.provider if self.deployment else "the provider"
        return UpstreamTimeoutError(
            f"{provider} sent {what} within {seconds:g} s (timeouts.{name}). Retry, or raise that timeout in "
            "the gateway's config for slow models."
        )

    def stopped_error(self) -> ApiError:
        if self.stop == "shutdown":
            grace = self.reliability.shutdown_grace_seconds
            return ApiError.from_provider(
                UpstreamUnavailableError(
                    f"The gateway is shutting down and ended this answer after its grace period of {grace:g} s; "
                    "retry the request.",
                    retry_after=1,
                )
            )
        return ApiError.from_provider(self.timeout_error())
