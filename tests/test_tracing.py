"""OpenTelemetry traces: a span per model call under the client's traceparent, a child per upstream
attempt whose context goes upstream, the GenAI attributes; and, with traces off, the client's own
traceparent passed upstream unchanged. The upstream is the fake vendor on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.config import GatewayConfig, Reliability
from providers.base import Deployment
from providers.catalog import ProviderSpec
from providers.router import ModelConfig
from tests.app.test_main import free_port, run_gateway, wait_until_up
from tests.conftest import asgi_client, make_app
from tests.fake_vendor import FakeVendor

TRACE_ID, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


@asynccontextmanager
async def gateway(vendor: FakeVendor) -> AsyncIterator[httpx.AsyncClient]:
    config = GatewayConfig(
        reliability=Reliability(retries=0),
        providers={
            "openai": ProviderSpec("openai", vendor.url, "sk-fake"),
            "backup": ProviderSpec("openai", vendor.url, "sk-fake"),
        },
        models={
            "flaky": ModelConfig(
                deployments=[Deployment("openai", "status:code=503,times=99,id=t1"), Deployment("backup", "ok:id=t2")]
            )
        },
    )
    app = make_app(config=config)
    try:
        async with asgi_client(app) as client:
            yield client
    finally:
        await app.state.services.router.aclose()  # no lifespan in process: close the upstream pools here


def upstream_traceparent(vendor: FakeVendor, model: str) -> str:
    head = vendor.heads[model][-1].decode()
    [line] = [line for line in head.split("\r\n") if line.startswith("traceparent:")]
    return line.partition(":")[2].strip()


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind == kind]


async def test_a_call_is_a_span_under_the_clients_trace_with_its_attempt_as_a_child(
    vendor: FakeVendor, spans: InMemorySpanExporter
) -> None:
    model = "ok:tokens=3,id=t0"
    body = {"model": f"openai/{model}", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    body["stream_options"] = {"include_usage": True}
    async with gateway(vendor) as client:
        response = await client.post("/v1/chat/completions", json=body, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    [call] = by_kind(spans.get_finished_spans(), SpanKind.SERVER)
    [attempt] = by_kind(spans.get_finished_spans(), SpanKind.CLIENT)
    assert call.name == f"chat openai/{model}"
    assert format(call.context.trace_id, "032x") == TRACE_ID
    assert call.parent is not None
    assert format(call.parent.span_id, "016x") == PARENT
    assert attempt.parent is not None
    assert attempt.parent.span_id == call.context.span_id
    attributes = dict(call.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == f"openai/{model}"
    assert attributes["gen_ai.response.model"] == "fake"  # the upstream's own name for it
    assert attributes["gen_ai.provider.name"] == "openai"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (3, 2)
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert 0 < float(attributes["gen_ai.response.time_to_first_chunk"]) < 5  # type: ignore[arg-type]
    assert "error.type" not in attributes
    assert dict(attempt.attributes or {})["gen_ai.request.model"] == model
    # The upstream saw the attempt's span as its parent, in the client's trace.
    assert upstream_traceparent(vendor, model) == f"00-{TRACE_ID}-{format(attempt.context.span_id, '016x')}-01"
    assert not [a for a in attributes if "content" in a or "messages" in a]  # no message content


async def test_a_failed_attempt_says_its_error_and_the_fallback_is_its_sibling(
    vendor: FakeVendor, spans: InMemorySpanExporter
) -> None:
    body = {"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}
    async with gateway(vendor) as client:
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    finished = spans.get_finished_spans()
    [call] = by_kind(finished, SpanKind.SERVER)
    failed, served = sorted(by_kind(finished, SpanKind.CLIENT), key=lambda span: span.start_time or 0)
    assert dict(failed.attributes or {})["error.type"] == "upstream_unavailable"
    assert failed.status.status_code == StatusCode.ERROR
    assert served.status.status_code == StatusCode.UNSET
    assert dict(served.attributes or {})["gen_ai.provider.name"] == "backup"
    assert {failed.parent.span_id, served.parent.span_id} == {call.context.span_id}  # type: ignore[union-attr]
    assert dict(call.attributes or {})["gateway.fallback"] is True


async def test_with_traces_off_the_clients_traceparent_goes_upstream_unchanged(vendor: FakeVendor) -> None:
    model = "ok:id=t3"
    body = {"model": f"openai/{model}", "messages": [{"role": "user", "content": "hi"}]}
    async with gateway(vendor) as client:
        assert (await client.post("/v1/chat/completions", json=body, headers={"traceparent": TRACEPARENT})).is_success
    assert upstream_traceparent(vendor, model) == TRACEPARENT


async def test_embeddings_have_their_span_too(vendor: FakeVendor, spans: InMemorySpanExporter) -> None:
    async with gateway(vendor) as client:
        response = await client.post("/v1/embeddings", json={"model": "hash-embedding", "input": "abc"})
    assert response.status_code == 200
    [call] = by_kind(spans.get_finished_spans(), SpanKind.SERVER)
    assert call.name == "embeddings hash-embedding"
    assert dict(call.attributes or {})["gen_ai.usage.input_tokens"] > 0  # type: ignore[operator]


class Receiver(ThreadingHTTPServer):
    """An OTLP HTTP receiver on 127.0.0.1: keeps the name of every span it is sent."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), ReceiverHandler)


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest.FromString(body)
        self.server.paths.append(self.path)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.server.names.extend(span.name for span in scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def test_spans_reach_a_real_otlp_http_receiver() -> None:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    port = free_port()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    process = run_gateway(PORT=str(port), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", process)
        body = {"model": "echo", "messages": [{"role": "user", "content": "traced"}]}
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while "chat echo" not in receiver.names and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.terminate()
        process.communicate(timeout=15)
        receiver.shutdown()
        receiver.server_close()
    assert receiver.paths[0] == "/v1/traces"
    assert receiver.names.count("chat echo") == 2  # the call, and its attempt on the simulated provider
