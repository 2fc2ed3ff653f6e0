"""Pure ASGI middleware: the request id and the one access-log line per request.

Both jobs share one ``send`` wrapper, so a streamed chunk passes through a single extra call.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import REQUEST_ID_KEY
from app.ops import metrics
from app.ops.logs import info_line
from providers.base import Usage

ACCESS_KEY = "gateway.access"
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class AccessRecord:
    """What the handler learns about a request that the access log should say."""

    __slots__ = (
        "cancelled",
        "chunks",
        "content",
        "deployment",
        "error",
        "fallback",
        "finish_reason",
        "key_name",
        "model",
        "notes",
        "provider",
        "response_model",
        "retries",
        "retry_kinds",
        "start",
        "status",
        "streamed",
        "tool_calls",
        "ttft_ms",
        "upstream_model",
        "usage",
    )

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.status = 500
        self.model: str | None = None
        self.streamed = False
        self.ttft_ms: float | None = None
        self.chunks = 0
        self.error: str | None = None
        self.deployment: str | None = None
        self.retries = 0
        self.retry_kinds: list[str] = []  # why each retry happened, for metrics
        self.fallback = False
        self.cancelled: str | None = None  # the phase the client left in
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.response_model: str | None = None  # the model that answered, as the upstream named it
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.key_name: str | None = None  # the gateway key's name, when keys are configured
        self.content: list[dict[str, str]] | None = None  # the request's messages, only with LOG_CONTENT=true
        self.tool_calls: list[dict[str, object]] = []  # MCP tools the gateway ran: server, tool, duration, outcome
        self.notes: dict[str, object] | None = None  # what else happened: a context fallback, a hedge, a rescue

    def account(self, usage: Usage | None, finish_reason: str | None) -> None:
        self.usage, self.finish_reason = usage, finish_reason

    def usage_fields(self, duration_ms: float) -> dict[str, object]:
        """Usage for the log line: tokens, and tokens per second while generating."""
        usage = self.usage or Usage()
        generating = (duration_ms - (self.ttft_ms or 0.0)) / 1000
        speed = round(usage.completion_tokens / generating, 1) if generating > 0 and usage.completion_tokens else None
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "tokens_per_second": speed,
            "finish_reason": self.finish_reason,
        }

    def mark_first_token(self) -> None:
        self.ttft_ms = round((time.perf_counter() - self.start) * 1000, 2)


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if SANE_REQUEST_ID.fullmatch(value):
                return str(value, "ascii")
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        header = (b"x-request-id", request_id.encode("ascii"))
        record = AccessRecord()
        scope[REQUEST_ID_KEY] = request_id
        scope[ACCESS_KEY] = record

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                write_access_log(scope, record, request_id)


def write_access_log(scope: Scope, record: AccessRecord, request_id: str) -> None:
    duration_ms = round((time.perf_counter() - record.start) * 1000, 2)
    fields: dict[str, object] = {
        "method": scope["method"],
        "path": scope["path"],
        "status": record.status,
        "duration_ms": duration_ms,
    }
    if record.key_name is not None:
        fields["key"] = record.key_name
    if record.model is not None:
        fields["model"] = record.model
    if record.streamed:
        fields["ttft_ms"] = record.ttft_ms
        fields["chunks"] = record.chunks
    if record.deployment is not None:
        fields.update(
            provider=record.provider,
            upstream_model=record.upstream_model,
            deployment=record.deployment,
            retries=record.retries,
            fallback=record.fallback,
            cancelled=record.cancelled is not None,
            **record.usage_fields(duration_ms),
        )
    if record.error is not None:
        fields["error"] = record.error
    if record.cancelled is not None:
        fields.update(phase=record.cancelled, delivered_chunks=record.chunks)
    if record.tool_calls:
        fields["tool_calls"] = record.tool_calls
    if record.notes:
        fields.update(record.notes)
    if record.content is not None:
        fields["messages"] = record.content
    info_line("request", fields, request_id)
    metrics.observe(
        scope["path"],
        record.status,
        record.model,
        record.provider,
        record.key_name,
        duration_ms / 1000,
        record.ttft_ms,
        record.usage,
        record.error,
        record.retry_kinds,
        record.cancelled,
    )
