from __future__ import annotations

import gzip
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from providers._errors import (
    common_error,
    connect_error,
    error_for,
    in_band_error,
    retry_after_from,
    status_error,
    timed_out,
)
from providers._http import make_client, upstream_events
from providers.base import (
    ContextLengthError,
    Finish,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    RateLimitedError,
    Start,
    TextDelta,
    UpstreamAuthError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    Usage,
)
from providers.openai import ChatStream
from tests.providers.streams import fixture


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "999999"}, 3600.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_from(headers) == seconds


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_from({"retry-after": when})
    assert seconds is not None
    assert 25 < seconds <= 30


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error":{"message":"bad model","type":"invalid_request_error"}}', "bad model"),
        (b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "Overloaded"),
        (b'{"error":"model \\"x\\" not found"}', 'model "x" not found'),
        (b'[{"error":{"code":400,"message":"wrapped"}}]', "wrapped"),
        (b'{"message":"plain"}', "plain"),
        (b"upstream connect error", "upstream connect error"),
        (b"<html><body>502 Bad Gateway</body></html>", None),
        (b"", None),
    ],
)
def test_common_error_finds_the_message(body: bytes, message: str | None) -> None:
    assert common_error(body).message == message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequestError),
        (401, UpstreamAuthError),
        (403, UpstreamAuthError),
        (404, ModelNotFoundError),
        (408, UpstreamTimeoutError),
        (409, ProviderError),
        (413, InvalidRequestError),
        (422, InvalidRequestError),
        (429, RateLimitedError),
        (500, ProviderError),
        (502, ProviderError),
        (503, UpstreamUnavailableError),
        (504, UpstreamTimeoutError),
        (529, UpstreamUnavailableError),
    ],
)
def test_the_status_table(status: int, kind: type[ProviderError]) -> None:
    error = error_for("acme", status, "said this", f"HTTP {status}", None)
    assert type(error) is kind
    assert "acme" in error.message
    assert ("said this" in error.message) is (kind is not UpstreamAuthError)


@pytest.mark.parametrize(
    ("status", "waits"), [(429, True), (503, True), (529, True), (500, True), (400, False), (404, False), (504, False)]
)
def test_retry_after_goes_on_only_where_waiting_helps(status: int, waits: bool) -> None:
    error = error_for("acme", status, None, f"HTTP {status}", 7.0)
    assert error.retry_after == (7.0 if waits else None)


def test_an_unknown_model_names_the_model_param() -> None:
    assert error_for("acme", 404, None, "HTTP 404", None).param == "model"
    assert error_for("acme", 400, None, "HTTP 400", None).param is None


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("rate_limit_exceeded", RateLimitedError),
        ("RESOURCE_EXHAUSTED", RateLimitedError),
        ("overloaded_error", UpstreamUnavailableError),
        ("UNAVAILABLE", UpstreamUnavailableError),
        ("invalid_request_error", InvalidRequestError),
        (503, UpstreamUnavailableError),
        ("server_error", ProviderError),
        (None, ProviderError),
    ],
)
def test_in_band_errors_by_kind(kind: str | int | None, error: type[ProviderError]) -> None:
    assert type(in_band_error("acme", "m", kind)) is error


def test_the_client_pool_is_sized_above_the_promised_concurrency() -> None:
    client = make_client("httpx")
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections >= 1000
    assert pool._max_keepalive_connections >= 1000


@respx.mock
async def test_a_cookie_one_upstream_answer_sets_is_not_sent_with_anyone_else_s_request() -> None:
    route = respx.post("https://up.test/v1/chat/completions").mock(
        return_value=httpx.Response(200, json={}, headers={"set-cookie": "__cf_bm=one-user; Path=/; Secure"})
    )
    client = make_client("httpx")  # the jar is the client's, above whichever transport
    async with client:
        for _ in range(2):
            await client.send(httpx.Request("POST", "https://up.test/v1/chat/completions", content=b"{}"))
    assert route.call_count == 2
    assert "cookie" not in route.calls.last.request.headers
    assert not client.cookies


@respx.mock
async def test_a_gzip_encoded_stream_is_decoded_before_parsing() -> None:
    respx.post("https://up.test/v1/chat/completions").mock(
        return_value=httpx.Response(
            200, content=gzip.compress(fixture("openai_text.sse")), headers={"content-encoding": "gzip"}
        )
    )
    async with httpx.AsyncClient() as client:
        request = httpx.Request("POST", "https://up.test/v1/chat/completions")
        events = [e async for e in upstream_events(client, request, "up", common_error, ChatStream("up"))]
    assert events[0] == Start()
    assert TextDelta("I'm") in events
    assert events[-2:] == [Usage(14, 30, cached_tokens=4), Finish("stop")]


def breaking(error: httpx.TransportError) -> Callable[[httpx.Request], httpx.Response]:
    """A 200 that sends two chunks of its stream, then fails with ``error``."""

    def respond(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            yield fixture("openai_text.sse")[:300]
            yield fixture("openai_text.sse")[300:900]
            raise error

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    return respond


def reset() -> httpx.ReadError:
    error = httpx.ReadError("<ClientOSError: 104, 'Connection reset by peer'>")
    error.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    return error


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (reset(), "the connection was lost while reading (Connection reset by peer)"),
        (  # what httpx-aiohttp makes of a chunked body cut short: its "400" is not a status
            httpx.RemoteProtocolError("<TransferEncodingError: 400, message='Not enough data to satisfy'>"),
            "its response broke off or was malformed",
        ),
        (httpx.ReadTimeout("timed out"), "it went silent"),
    ],
)
@respx.mock
async def test_a_connection_that_breaks_mid_answer_says_who_broke_and_when_in_plain_words(
    error: httpx.TransportError, says: str
) -> None:
    respx.post("https://up.test/x").mock(side_effect=breaking(error))
    async with httpx.AsyncClient() as client:
        stream = upstream_events(
            client, httpx.Request("POST", "https://up.test/x"), "up", common_error, ChatStream("up")
        )
        with pytest.raises(ProviderError) as info:
            [e async for e in stream]
    message = info.value.message
    assert message.endswith(f"mid-answer, after 2 chunks of its stream: {says}.")
    assert message.startswith(("The connection to up broke", "up stopped sending"))
    assert "<" not in message
    assert "400" not in message
    assert info.value.status in (502, 504)


async def test_a_refused_connection_says_so_before_the_headers() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with httpx.AsyncClient() as client:
        stream = upstream_events(
            client, httpx.Request("POST", f"http://127.0.0.1:{port}/x"), "up", common_error, ChatStream("up")
        )
        with pytest.raises(ProviderError) as info:
            [e async for e in stream]
    assert info.value.message == (
        "The gateway could not reach up: the connection could not be opened (Connection refused), before its headers."
    )


class ServerDisconnectedError(Exception):
    """Stands in for aiohttp's, which httpx-aiohttp wraps in a ConnectTimeout."""


def wrapped(cause: BaseException | None) -> httpx.ConnectTimeout:
    exc = httpx.ConnectTimeout("wrapped")
    exc.__cause__ = cause
    return exc


def test_only_a_real_timeout_counts_as_one() -> None:
    assert timed_out(wrapped(None))
    assert timed_out(wrapped(TimeoutError()))
    assert not timed_out(wrapped(ConnectionRefusedError()))
    assert not timed_out(wrapped(ServerDisconnectedError()))  # a dropped pooled connection, not a slow server
    assert not timed_out(httpx.ConnectError("refused"))
    assert isinstance(connect_error("vendor", wrapped(ServerDisconnectedError())), UpstreamUnavailableError)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_a_retry_after_that_is_no_number_is_ignored(raw: str) -> None:
    assert retry_after_from({"retry-after": raw}) is None
    assert retry_after_from({"retry-after-ms": raw}) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"error":{"message":"Your input exceeds the context window of this model.","code":"context_length_exceeded"}}',
        b'{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens '
        b'allowed (1048576).","status":"INVALID_ARGUMENT"}}',
        b'{"error":"input length exceeds the context length"}',
        b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens"}}',
    ],
)
def test_each_vendors_way_of_saying_the_prompt_does_not_fit_is_one_error(body: bytes) -> None:
    error = status_error("up", 400, body, {}, common_error)
    assert isinstance(error, ContextLengthError)
    assert (error.status, error.code, error.param) == (400, "context_length_exceeded", "messages")


def test_other_rejections_stay_what_they_were() -> None:
    error = status_error("up", 400, b'{"error":{"message":"temperature must be at most 2"}}', {}, common_error)
    assert not isinstance(error, ContextLengthError)
    assert isinstance(error, InvalidRequestError)
    assert isinstance(in_band_error("up", "too long", "context_length_exceeded"), ContextLengthError)


@respx.mock
async def test_a_connection_that_breaks_before_any_of_the_answer_says_so() -> None:
    async def nothing() -> AsyncIterator[bytes]:
        raise reset()
        yield b""  # pragma: no cover - makes it a generator

    response = httpx.Response(200, content=nothing(), headers={"content-type": "text/event-stream"})
    respx.post("https://up.test/x").mock(return_value=response)
    async with httpx.AsyncClient() as client:
        stream = upstream_events(
            client, httpx.Request("POST", "https://up.test/x"), "up", common_error, ChatStream("up")
        )
        with pytest.raises(ProviderError) as info:
            [e async for e in stream]
    assert "broke after its headers, before any of its stream" in info.value.message
    assert "mid-answer" not in info.value.message
