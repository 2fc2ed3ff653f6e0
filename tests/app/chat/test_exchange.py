"""The exchange on its own: a scripted provider in, a recording outlet out, no server in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import orjson
import pytest

from app.chat.answering import Ticket
from app.chat.exchange import Exchange
from app.config import Backoff, GatewayConfig, Reliability
from app.dialects.base import Dialect
from app.dialects.native import NATIVE_CHAT
from app.dialects.openai import CHAT_COMPLETIONS
from app.http.access import AccessRecord
from app.services import Services
from providers.base import (
    Deployment,
    Event,
    Finish,
    InvalidRequestError,
    Start,
    TextDelta,
    Timeouts,
    UpstreamUnavailableError,
    Usage,
)
from providers.request import CHAT_REQUEST_DECODER, ChatRequest
from providers.router import Plan, Router
from tests.fakes import ScriptedProvider

ANSWER: list[Event | Exception] = [Start(), TextDelta("Hel"), TextDelta("lo"), Usage(3, 2), Finish("stop")]
QUICK = Reliability(backoff=Backoff(base=0.001, max=0.001), keepalive_seconds=60)


class Recorder:
    """An outlet that keeps what the exchange did with it, in order."""

    def __init__(self, keepalive: bytes | None = b": ka\n\n") -> None:
        self.committed = False
        self.keepalive = keepalive
        self.calls: list[tuple[str, object]] = []
        self.responses: list[tuple[int, dict[bytes, bytes], Any]] = []

    async def commit(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.committed = True
        self.calls.append(("commit", headers))

    async def write(self, frame: bytes) -> None:
        self.calls.append(("write", frame))

    async def close(self, frames: list[bytes]) -> None:
        self.calls.append(("close", frames))

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.committed = True
        self.calls.append(("respond", None))
        self.responses.append((status, dict(headers), orjson.loads(body)))

    def only_response(self) -> tuple[int, dict[bytes, bytes], Any]:
        """The one response, when the exchange answered with nothing else."""
        assert self.names() == ["respond"]
        (response,) = self.responses
        return response

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class Scripts:
    """A provider that plays a new script on each call: a retry sees the next one."""

    name, models = "fake", ("fake",)

    def __init__(self, *scripts: Sequence[Event | Exception]) -> None:
        self.scripts = [ScriptedProvider(script) for script in scripts]
        self.calls = 0

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        script = self.scripts[min(self.calls, len(self.scripts) - 1)]
        self.calls += 1
        async for event in script.stream(request, deployment):
            yield event

    async def aclose(self) -> None:
        return None


class Endless:
    """Answers a token every 10 ms until it is closed."""

    name, models = "fake", ("fake",)

    def __init__(self, first_token_after: float = 0.0) -> None:
        self.first_token_after = first_token_after
        self.closed = False

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        try:
            yield Start()
            await asyncio.sleep(self.first_token_after)
            while True:
                yield TextDelta("tok ")
                await asyncio.sleep(0.01)
        finally:
            self.closed = True

    async def aclose(self) -> None:
        return None


def exchange(
    provider: object, *, stream: bool = True, dialect: Dialect = CHAT_COMPLETIONS, reliability: Reliability = QUICK
) -> Exchange:
    services = Services(Router([provider]), GatewayConfig(reliability=reliability), b"")  # type: ignore[list-item]
    body = {"model": "fake/fake", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    chat = CHAT_REQUEST_DECODER.decode(orjson.dumps(body))
    ticket = Ticket(chat, Plan([Deployment("fake", "fake")]), AccessRecord(), "chatcmpl-1")
    return Exchange(services, ticket, dialect)


def data(frame: object) -> dict[str, object]:
    assert isinstance(frame, bytes)
    assert frame.startswith(b"data: ")
    decoded: dict[str, object] = orjson.loads(frame[6:])
    return decoded


async def test_a_stream_commits_on_start_then_sends_each_event_and_ends_with_done() -> None:
    outlet, ex = Recorder(), exchange(Scripts(ANSWER))
    await ex.serve(outlet, "req-1")
    assert outlet.names() == ["commit", "write", "write", "write", "write", "close"]
    assert outlet.calls[0] == ("commit", [(b"x-gateway-deployment", b"fake/fake")])
    texts = [data(frame)["choices"][0]["delta"] for _, frame in outlet.calls[1:5]]  # type: ignore[index]
    assert texts == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {}]
    assert outlet.calls[-1] == ("close", [b"data: [DONE]\n\n"])
    assert (ex.phase, ex.record.chunks, ex.record.error) == ("done", 4, None)
    assert ex.record.ttft_ms is not None


async def test_a_whole_answer_is_one_response_in_the_dialect() -> None:
    outlet, ex = Recorder(), exchange(Scripts(ANSWER), stream=False, dialect=NATIVE_CHAT)
    await ex.serve(outlet, "req-1")
    status, headers, body = outlet.only_response()
    assert (status, headers[b"x-gateway-deployment"]) == (200, b"fake/fake")
    assert body["content"] == "Hello"
    assert body["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 5


async def test_a_refusal_before_the_first_byte_is_an_error_status_and_is_not_retried() -> None:
    provider = Scripts([InvalidRequestError("bad request")], ANSWER)
    outlet, ex = Recorder(), exchange(provider)
    await ex.serve(outlet, "req-9")
    status, _, body = outlet.only_response()
    assert status == 400
    assert body["error"]["request_id"] == "req-9"
    assert (provider.calls, ex.record.error) == (1, "invalid_request")


async def test_an_unavailable_upstream_is_retried_before_the_first_byte() -> None:
    provider = Scripts([UpstreamUnavailableError("busy")], ANSWER)
    outlet, ex = Recorder(), exchange(provider)
    await ex.serve(outlet, "req-1")
    assert outlet.names()[-1] == "close"
    assert (provider.calls, ex.record.retries, ex.record.retry_kinds) == (2, 1, ["upstream_unavailable"])


async def test_a_failure_after_content_is_an_error_event_never_a_retry() -> None:
    provider = Scripts([Start(), TextDelta("Hel"), UpstreamUnavailableError("gone")], ANSWER)
    outlet, ex = Recorder(), exchange(provider)
    await ex.serve(outlet, "req-1")
    name, frames = outlet.calls[-1]
    assert name == "close"
    assert isinstance(frames, list)
    assert data(frames[0])["error"]["code"] == "upstream_unavailable"  # type: ignore[index]
    assert b"[DONE]" not in b"".join(frames)
    assert provider.calls == 1


async def test_a_stream_that_ends_without_a_finish_is_truncated() -> None:
    outlet, ex = Recorder(), exchange(Scripts([Start(), TextDelta("Hel")]))
    await ex.serve(outlet, "req-1")
    _, frames = outlet.calls[-1]
    assert data(frames[0])["error"]["code"] == "stream_truncated"  # type: ignore[index]


async def test_cancel_stops_the_stream_and_closes_the_upstream() -> None:
    provider = Endless()
    outlet, ex = Recorder(), exchange(provider)
    serving = asyncio.ensure_future(ex.serve(outlet, "req-1"))
    await asyncio.sleep(0.05)
    ex.cancel()
    await asyncio.wait_for(serving, 1)  # returns quietly: the client left
    assert provider.closed
    assert (ex.client_gone, ex.record.cancelled, ex.turn_outcome()) == (True, "streaming", "cancelled")
    assert "close" not in outlet.names()


async def test_no_first_token_in_time_is_a_timeout_status_before_anything_was_sent() -> None:
    reliability = Reliability(retries=0, timeouts=Timeouts(first_token=0.05, total=5), keepalive_seconds=60)
    outlet, ex = Recorder(keepalive=None), exchange(Endless(first_token_after=10), reliability=reliability)
    await asyncio.wait_for(ex.serve(outlet, "req-1"), 2)
    # The upstream's Start committed the stream, so the timeout is an error event in it.
    _, frames = outlet.calls[-1]
    assert data(frames[0])["error"]["code"] == "upstream_timeout"  # type: ignore[index]
    assert "timeouts.first_token" in data(frames[0])["error"]["message"]  # type: ignore[index]


async def test_keepalives_commit_a_silent_stream() -> None:
    reliability = Reliability(retries=0, timeouts=Timeouts(total=0.4), keepalive_seconds=0.03)
    outlet, ex = Recorder(), exchange(Endless(first_token_after=10), reliability=reliability)
    await asyncio.wait_for(ex.serve(outlet, "req-1"), 2)
    keepalives = [frame for name, frame in outlet.calls if name == "write" and frame == b": ka\n\n"]
    assert len(keepalives) >= 3
    _, frames = outlet.calls[-1]
    assert data(frames[0])["error"]["code"] == "upstream_timeout"  # type: ignore[index]


class Silent(Endless):
    """Never answers, until it is closed."""

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        try:
            await asyncio.sleep(10)
            yield Start()
        finally:
            self.closed = True


async def test_a_client_leaving_before_any_status_is_logged_as_499() -> None:
    provider = Silent()
    outlet, ex = Recorder(), exchange(provider)
    serving = asyncio.ensure_future(ex.serve(outlet, "req-1"))
    await asyncio.sleep(0.05)
    ex.cancel()
    await asyncio.wait_for(serving, 1)
    assert (ex.record.status, ex.record.cancelled, outlet.calls) == (499, "connecting", [])
    assert provider.closed


@pytest.mark.parametrize("stream", [True, False])
async def test_a_total_timeout_before_any_upstream_answer_is_a_504(stream: bool) -> None:
    reliability = Reliability(retries=0, timeouts=Timeouts(total=0.05), keepalive_seconds=60)
    outlet, ex = Recorder(), exchange(Silent(), stream=stream, reliability=reliability)
    await asyncio.wait_for(ex.serve(outlet, "req-1"), 2)
    status, headers, body = outlet.only_response()
    assert (status, body["error"]["code"]) == (504, "upstream_timeout")
    assert headers[b"content-type"] == b"application/json"
