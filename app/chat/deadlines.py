"""An exchange's timers, on events rather than on every chunk: one ``Deadlines`` per exchange.

It enforces the timeouts (first token, idle between content events, total), asks for keep-alive
comments while a stream is silent, and ends the exchange when the shutdown grace period is over. It
sleeps on one future with one timer until the nearest deadline, or until the exchange tells it that
something changed. The exchange owns it: it reports what happened (an attempt began or ended, content
came, the answer is done) and hears back through the one callback ``watch`` is given. Which deadline
comes next is the pure ``next_deadline``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from app.config import Reliability
from app.errors import ApiError
from app.ops.shutdown import SHUTDOWN
from providers.base import Timeouts, UpstreamTimeoutError, UpstreamUnavailableError

NEVER = float("inf")
WHAT_WAS_MISSING = {"first_token": "no first token", "idle": "no new token", "total": "no complete answer"}
OnDue = Callable[[str], Awaitable[None]]


class Marks:
    """When things happened, on the monotonic clock: what the deadlines are computed from."""

    __slots__ = ("attempt_started", "expired", "first_content", "in_attempt", "last_content", "last_sent", "started")

    def __init__(self, now: float) -> None:
        self.started = self.last_sent = now
        self.last_content = self.attempt_started = 0.0
        self.in_attempt = self.first_content = False
        self.expired: str | None = None  # the timeout that fired; the attempt's timers stop until the next


def next_deadline(
    marks: Marks, timeouts: Timeouts, keepalive_every: float | None, shutdown: tuple[float, float] | None
) -> tuple[float, str]:
    """The nearest deadline and its name. ``shutdown`` is (when it began, the grace period)."""
    deadlines = [(marks.started + (timeouts.total or NEVER), "total")]
    if marks.in_attempt and marks.expired is None:
        if marks.first_content:
            deadlines.append((marks.last_content + (timeouts.idle or NEVER), "idle"))
        else:
            deadlines.append((marks.attempt_started + (timeouts.first_token or NEVER), "first_token"))
    if keepalive_every is not None:
        deadlines.append((marks.last_sent + keepalive_every, "keepalive"))
    if shutdown is not None:
        deadlines.append((shutdown[0] + shutdown[1], "shutdown"))
    return min(deadlines)


class Deadlines:
    def __init__(self, reliability: Reliability, keepalive: bool):
        self.reliability = reliability
        self.timeouts = reliability.timeouts
        self.marks = Marks(time.monotonic())
        self.keepalive_every: float | None = reliability.keepalive_seconds if keepalive else None
        self.stop: str | None = None  # why the whole exchange was stopped: "total" or "shutdown"
        self.wakeup: asyncio.Future[None] | None = None

    @property
    def expired(self) -> str | None:
        return self.marks.expired

    @property
    def first_content(self) -> bool:
        return self.marks.first_content

    def attempt(self, timeouts: Timeouts) -> None:
        """An attempt began, under its deployment's timeouts: its first-token clock starts now."""
        self.timeouts = timeouts
        self.marks.attempt_started, self.marks.in_attempt, self.marks.expired = time.monotonic(), True, None
        self.poke()

    def total_left(self) -> float:
        """Seconds until the total timeout; infinite without one."""
        return self.marks.started + (self.timeouts.total or NEVER) - time.monotonic()

    def restart_idle(self) -> None:
        """A rescue begins: the continuation's first text is bounded by ``idle`` from now."""
        self.marks.last_content = time.monotonic()
        self.poke()

    def attempt_over(self) -> None:
        self.marks.in_attempt = False

    def content(self) -> bool:
        """Content reached the client (the per-chunk path: two stamps). True for the first content."""
        marks = self.marks
        marks.last_content = marks.last_sent = time.monotonic()
        if marks.first_content:
            return False
        marks.first_content = True
        self.poke()
        return True

    def done(self) -> None:
        """The answer is complete or failed: nothing more to keep alive."""
        self.keepalive_every = None

    def poke(self) -> None:
        """Something changed (an attempt began, the first token came, shutdown began): recompute."""
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def watch(self, on_due: OnDue) -> None:
        """Until the exchange is stopped: sleep to the nearest deadline, then tell ``on_due`` its name.

        After a first-token or idle timeout it waits for the next attempt; after "total" or
        "shutdown" it returns, and the exchange ends.
        """
        SHUTDOWN.listen(self)
        while True:
            due, what = self.next()
            delay = due - time.monotonic()
            if delay > 0:
                await self.sleep_until(delay)
                continue
            if what == "keepalive":
                self.marks.last_sent = time.monotonic()
                await on_due(what)
            elif what in ("total", "shutdown"):
                self.stop = self.marks.expired = what
                await on_due(what)
                return
            else:
                self.marks.expired = what
                await on_due(what)
                await self.sleep_until(None)  # until the next attempt begins

    def next(self) -> tuple[float, str]:
        started = SHUTDOWN.started_at
        shutdown = (started, self.reliability.shutdown_grace_seconds) if started is not None else None
        return next_deadline(self.marks, self.timeouts, self.keepalive_every, shutdown)

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

    def timeout_error(self, provider: str | None) -> UpstreamTimeoutError:
        name = self.marks.expired if self.marks.expired in WHAT_WAS_MISSING else "total"
        seconds = getattr(self.timeouts, name)
        return UpstreamTimeoutError(
            f"{provider or 'the provider'} sent {WHAT_WAS_MISSING[name]} within {seconds:g} s (timeouts.{name}). "
            "Retry, or raise that timeout in the gateway's config for slow models."
        )

    def stopped_error(self, provider: str | None) -> ApiError:
        """Why the exchange was stopped, as the client hears it."""
        if self.stop == "shutdown":
            grace = self.reliability.shutdown_grace_seconds
            return ApiError.from_provider(
                UpstreamUnavailableError(
                    f"The gateway is shutting down and ended this answer after its grace period of {grace:g} s; "
                    "retry the request.",
                    retry_after=1,
                )
            )
        return ApiError.from_provider(self.timeout_error(provider))
