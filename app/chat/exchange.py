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

import structlog

from app.chat.deadlines import Deadlines
from app.chat.failover import Failover
from app.chat.outlets import Outlet
from app.errors import ApiError
from app.ops import metrics

INTERNAL_ERROR = ApiError(
    500,
    "The gateway failed on this request; this is a bug on our side. Report it with the request id.",
    code="internal_error",
    type="server_error",
)
log = structlog.get_logger("gateway")


class Exchange(Failover):
    """The whole exchange: attempts (``Failover``) bounded by deadlines, cancelled when the client leaves."""

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
            self.record.response_model = self.served
            if self.turn is not None:
                self.turn.end(self.turn_outcome(), self.record.deployment, self.record.error)

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
