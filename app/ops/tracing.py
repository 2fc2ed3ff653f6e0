"""OpenTelemetry traces, off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``tracing.enabled``) turns them on.

One span per model call (``chat {model}``, ``embeddings {model}``), taking the client's W3C
``traceparent`` as its parent; a child span per upstream attempt, whose context goes upstream in the
``traceparent`` header; a span per MCP tool call the gateway runs. Attributes follow the GenAI
semantic conventions, set once at each span's end from what the request already counts: nothing is
done per chunk, and no message content is recorded unless ``LOG_CONTENT`` is on. Off, the client's
``traceparent`` still goes upstream unchanged, so a trace crosses the gateway either way.

The OTLP HTTP exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables; ``OTEL_SERVICE_NAME``
names the service (``llm-gateway`` by default). Spans are exported in batches, off the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.http.access import AccessRecord
from providers.tracecontext import TRACE_HEADERS

PROPAGATOR = TraceContextTextMapPropagator()
SERVICE = "llm-gateway"
TRACE_CONTEXT = ("traceparent", "tracestate")  # the W3C trace context a client may send


def trace_context(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's W3C trace context, from a request's headers."""
    return {name: headers[name] for name in TRACE_CONTEXT if name in headers}


class Tracing:
    """The tracer, or nothing at all when traces are off."""

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer | None = None

    def start(self, exporter: SpanExporter | None = None) -> None:
        """Traces on: to ``exporter`` as each span ends (tests), else to the OTLP endpoint in batches."""
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # only when on

            processor: Any = BatchSpanProcessor(OTLPSpanExporter())
        else:
            processor = SimpleSpanProcessor(exporter)
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(SERVICE)

    def stop(self) -> None:
        """Export what is left, then off."""
        if self.provider is not None:
            self.provider.shutdown()
        self.provider = self.tracer = None

    @contextmanager
    def call(self, carried: Mapping[str, str], operation: str, model: str) -> Iterator[Span | None]:
        """The span of one model call, child of the client's ``traceparent`` (``trace_context``) when it sent one."""
        if self.tracer is None:
            token = TRACE_HEADERS.set(carried or None)  # passed upstream as it came
            try:
                yield None
            finally:
                TRACE_HEADERS.reset(token)
            return
        parent = PROPAGATOR.extract(carried)
        attributes = {"gen_ai.operation.name": operation, "gen_ai.request.model": model}
        with self.tracer.start_as_current_span(
            f"{operation} {model}", context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span

    @contextmanager
    def attempt(self, operation: str, provider: str, model: str) -> Iterator[Span | None]:
        """The span of one upstream attempt; its context goes upstream as ``traceparent``."""
        if self.tracer is None:
            yield None
            return
        attributes = {"gen_ai.operation.name": operation, "gen_ai.provider.name": provider}
        attributes["gen_ai.request.model"] = model
        with self.tracer.start_as_current_span(
            f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            carrier: dict[str, str] = {}
            PROPAGATOR.inject(carrier)
            token = TRACE_HEADERS.set(carrier)
            try:
                yield span
            finally:
                TRACE_HEADERS.reset(token)

    @contextmanager
    def tool(self, server: str, name: str) -> Iterator[Span | None]:
        if self.tracer is None:
            yield None
            return
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "mcp.server": server}
        with self.tracer.start_as_current_span(
            f"execute_tool {name}", kind=SpanKind.INTERNAL, attributes=attributes, record_exception=False
        ) as span:
            yield span


def call_outcome(span: Span | None, record: AccessRecord, log_content: bool = False) -> None:
    """What a model call's span says at its end, from its access record."""
    if span is None:
        return
    usage = record.usage
    attributes: dict[str, Any] = {
        "gen_ai.provider.name": record.provider,
        "gen_ai.response.model": record.response_model,
        "gen_ai.usage.input_tokens": usage.prompt_tokens if usage else None,
        "gen_ai.usage.output_tokens": usage.completion_tokens if usage else None,
        "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens if usage and usage.cached_tokens else None,
        "gen_ai.response.finish_reasons": [record.finish_reason] if record.finish_reason else None,
        "gen_ai.response.time_to_first_chunk": record.ttft_ms / 1000 if record.ttft_ms is not None else None,
        "gateway.deployment": record.deployment,
        "gateway.key": record.key_name,
        "gateway.retries": record.retries,
        "gateway.fallback": record.fallback,
    }
    if log_content and record.content is not None:
        attributes["gen_ai.input.messages"] = orjson.dumps(record.content).decode()
    error = record.error or ("cancelled" if record.cancelled else None)
    if error is None and record.status >= 400:
        error = str(record.status)
    outcome(span, attributes, error)


def outcome(span: Span | None, attributes: Mapping[str, Any], error: str | None) -> None:
    """A span's last attributes, and its status: an error's type, else unset (success)."""
    if span is None:
        return
    span.set_attributes({name: value for name, value in attributes.items() if value is not None})
    if error is not None:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR))


TRACING = Tracing()
