"""The shared HTTP machinery: one client factory, and upstream failures mapped to errors in one place.

Every provider gets one pooled ``httpx.AsyncClient`` for the life of the process. What runs beneath
httpx is one setting (``TRANSPORTS``), so the transport can be chosen by measurement.
"""

from __future__ import annotations

import email.utils
import math
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, cast

import httpx
import msgspec

from providers.base import (
    CONTENT_EVENTS,
    ContextLengthError,
    Deployment,
    Event,
    InvalidRequestError,
    ModelNotFoundError,
    Original,
    Provider,
    ProviderError,
    RateLimitedError,
    Start,
    UpstreamAuthError,
    UpstreamModel,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from providers.request import JSON_ENCODER, ChatRequest
from providers.tracecontext import with_trace_context

CONTENT_KINDS = frozenset(CONTENT_EVENTS)

# Above the concurrency we promise: httpx's default of 100 connections is a silent ceiling.
POOL_LIMITS = httpx.Limits(max_connections=4096, max_keepalive_connections=1024, keepalive_expiry=30)
# Reads are bounded per socket read only as a last resort; event-level timeouts belong to the relay.
TIMEOUTS = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=5.0)
REQUEST_TIMEOUTS = TIMEOUTS.as_dict()
MAX_ERROR_BODY = 64 * 1024
NOT_AN_ANSWER = frozenset({"text/html", "application/xhtml+xml", "text/plain", "text/xml"})
RETRY_AFTER_CAP = 3600.0


def default_transport() -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(limits=POOL_LIMITS, retries=0)


def aiohttp_transport() -> httpx.AsyncBaseTransport:
    """httpx's API over aiohttp's connection pool, which stays flat where httpx's own pool rescans."""
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(limits=POOL_LIMITS)


def native_transport() -> httpx.AsyncBaseTransport:
    """Our own HTTP/1.1 beneath httpx (providers._native)."""
    from providers._native import NativeTransport

    return NativeTransport(POOL_LIMITS)


TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "native": native_transport,
    "httpx": default_transport,
    "aiohttp": aiohttp_transport,
}


def make_client(transport: str = "httpx") -> httpx.AsyncClient:
    """The one place clients are built: pool limits, keep-alive and timeouts, over the chosen transport."""
    # The native transport reads the proxy variables itself; httpx's own reading would route around it.
    return httpx.AsyncClient(transport=TRANSPORTS[transport](), timeout=TIMEOUTS, trust_env=transport != "native")


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, request: httpx.Request, provider: str, read_error: ErrorReader
) -> AsyncIterator[httpx.Response]:
    """Send ``request``; yield the response once it answered 2xx, else raise the mapped error.

    The response is always closed on the way out, so an abandoned stream never holds a pooled connection.
    """
    try:
        response = await client.send(with_trace_context(request), stream=True)
    except httpx.TransportError as exc:
        raise connect_error(provider, exc) from exc
    try:
        if response.status_code >= 300:
            body = await read_bounded(response)
            raise status_error(provider, response.status_code, body, response.headers, read_error)
        kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind in NOT_AN_ANSWER:  # a proxy's or a login page: nothing is sent yet, so it is an honest 502
            raise protocol_error(provider, f"a 200 with a {kind} body instead of its answer")
        yield response
    except httpx.TransportError as exc:
        raise mid_answer_error(provider, exc, None) from exc
    finally:
        await response.aclose()


def connect_error(provider: str, exc: httpx.TransportError) -> ProviderError:
    if timed_out(exc):
        return UpstreamTimeoutError(f"{provider} did not answer in time: {broken(exc)}, before its headers.")
    return UpstreamUnavailableError(f"The gateway could not reach {provider}: {broken(exc)}, before its headers.")


def mid_answer_error(provider: str, exc: httpx.TransportError, chunks: int | None) -> ProviderError:
    """A connection that broke after the headers: which provider, and how far (in chunks of content) its
    answer had come."""
    if chunks is None:  # the caller read the body itself
        where = "mid-answer"
    elif chunks:
        where = f"mid-answer, after {chunks:,} chunk{'s' * (chunks != 1)} of its answer"
    else:
        where = "after its headers, before any of its answer"
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"{provider} stopped sending {where}: {broken(exc)}.")
    return ProviderError(f"The connection to {provider} broke {where}: {broken(exc)}.")


# What went wrong, in words: never the HTTP library's repr, whose internal numbers read like statuses.
BROKEN: tuple[tuple[type[httpx.TransportError], str], ...] = (
    (httpx.TimeoutException, "it went silent"),
    (httpx.ConnectError, "the connection could not be opened"),
    (httpx.RemoteProtocolError, "its response broke off or was malformed"),
    (httpx.ReadError, "the connection was lost while reading"),
    (httpx.WriteError, "the connection was lost while sending the request"),
)


def broken(exc: BaseException) -> str:
    what = next((text for kind, text in BROKEN if isinstance(exc, kind)), "the connection failed")
    seen: BaseException | None = exc
    while seen is not None:  # the operating system's own words for its error number ("Connection refused")
        if isinstance(seen, OSError) and isinstance(seen.errno, int) and seen.errno > 0:
            return f"{what} ({os.strerror(seen.errno)})"
        seen = seen.__cause__ or seen.__context__
    return what


def timed_out(exc: httpx.HTTPError) -> bool:
    """Whether ``exc`` is a real timeout. httpx-aiohttp reports a refused or dropped connection as
    ConnectTimeout too; the cause tells the truth (a timeout's cause is a timeout, by name)."""
    cause = exc.__cause__
    return isinstance(exc, httpx.TimeoutException) and (cause is None or "timeout" in type(cause).__name__.lower())


async def read_bounded(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return bytes(body[:MAX_ERROR_BODY])


class VendorError(msgspec.Struct):
    """What a vendor's error body says: its message, and a retry delay when it gives one in the body."""

    message: str | None = None
    retry_after: float | None = None
    auth: bool = False  # some vendors refuse a bad key with a 400 (Gemini's API_KEY_INVALID)


ErrorReader = Callable[[bytes], VendorError]


def status_error(
    provider: str, status: int, body: bytes, headers: Mapping[str, str], read_error: ErrorReader
) -> ProviderError:
    vendor = read_error(body)
    if status in (400, 413, 422) and TOO_LONG.search(body):
        return too_long(provider, vendor.message)
    retry_after = vendor.retry_after or retry_after_from(headers)
    return error_for(provider, 401 if vendor.auth else status, vendor.message, f"HTTP {status}", retry_after)


# Each vendor's way of saying that the prompt does not fit: OpenAI's code (and the Responses API's),
# vLLM's and llama.cpp's words, Anthropic's, Gemini's, Ollama's.
TOO_LONG = re.compile(
    rb"context_length_exceeded|maximum context length|context window|exceeds? the context|prompt is too long"
    rb"|input token count .{0,40}exceeds|exceeds the maximum number of tokens|input length exceeds",
    re.IGNORECASE,
)


def too_long(provider: str, message: str | None) -> ContextLengthError:
    said = f": {message}" if message else ""
    return ContextLengthError(
        f"{provider} says the prompt does not fit the model's context window{said}. Shorten the conversation, or "
        "use a model with a larger window (an alias's context_fallbacks send it there).",
        param="messages",
    )


# In-band errors name a kind, not a status: the first fragment found in the kind picks the status.
KIND_STATUS = (
    ("rate_limit", 429),
    ("resource_exhausted", 429),
    ("quota", 429),
    ("overloaded", 529),
    ("unavailable", 503),
    ("timeout", 504),
    ("deadline", 504),
    ("authentication", 401),
    ("permission", 403),
    ("not_found", 404),
    ("invalid", 400),
)


def in_band_error(provider: str, message: str | None, kind: str | int | None) -> ProviderError:
    """An error the provider put inside a 200 stream, by its HTTP-like code or its kind."""
    if isinstance(kind, int):
        status = kind
    else:
        lowered = (kind or "").lower()
        if "context_length" in lowered:
            return too_long(provider, message)
        status = next((code for fragment, code in KIND_STATUS if fragment in lowered), 502)
    return error_for(provider, status, message, "in its stream", None)


class Mapped(NamedTuple):
    """What an upstream status becomes: the error class and what the message says after the provider's name."""

    kind: type[ProviderError]
    says: str
    param: str | None = None
    waits: bool = False  # the upstream's Retry-After goes on to the client
    quotes: bool = True  # the vendor's own words follow; never for auth, where they can echo part of the key


AUTH = Mapped(
    UpstreamAuthError,
    "refused the gateway's credentials ({where}). The operator should check the API key configured for "
    "{provider}; the client's request is not at fault.",
    quotes=False,
)
REJECTED = Mapped(InvalidRequestError, "rejected the request ({where})")
TIMED_OUT = Mapped(UpstreamTimeoutError, "timed out ({where})")
UNAVAILABLE = Mapped(UpstreamUnavailableError, "is overloaded or unavailable ({where})", waits=True)
# The one table from an upstream status to the error the client sees; any other status is OTHER (a 502).
STATUS_ERRORS: dict[int, Mapped] = {
    400: REJECTED,
    401: AUTH,
    403: AUTH,
    404: Mapped(ModelNotFoundError, "does not know this model ({where})", param="model"),
    408: TIMED_OUT,
    413: REJECTED,
    422: REJECTED,
    429: Mapped(RateLimitedError, "is rate-limiting the gateway ({where})", waits=True),
    503: UNAVAILABLE,
    504: TIMED_OUT,
    529: UNAVAILABLE,
}
OTHER = Mapped(ProviderError, "failed ({where})", waits=True)


def error_for(provider: str, status: int, message: str | None, where: str, retry_after: float | None) -> ProviderError:
    mapped = STATUS_ERRORS.get(status, OTHER)
    said = f": {message}" if message and mapped.quotes else ""
    text = f"{provider} {mapped.says.format(provider=provider, where=where)}{said}"
    return mapped.kind(text, param=mapped.param, retry_after=retry_after if mapped.waits else None)


MAX_WHOLE_BODY = 64 * 1024 * 1024


class WholeBody:
    """The reader of an answer that is not streamed: its bytes kept, bounded so that a peer cannot
    exhaust the gateway's memory, for ``end`` to read once they are all in."""

    def __init__(self, provider: str):
        self.provider = provider
        self.body = bytearray()

    def feed(self, chunk: bytes) -> list[Event]:
        self.body += chunk
        if len(self.body) > MAX_WHOLE_BODY:
            raise protocol_error(self.provider, f"a body larger than {MAX_WHOLE_BODY} bytes")
        return []


class StreamMapper(Protocol):
    """A vendor's sans-I/O stream reader: its bytes in, canonical events out; ``end`` checks the terminator."""

    def feed(self, chunk: bytes) -> list[Event]: ...

    def end(self) -> list[Event]: ...


async def upstream_events(
    client: httpx.AsyncClient, request: httpx.Request, provider: str, read_error: ErrorReader, mapper: StreamMapper
) -> AsyncGenerator[Event, None]:
    """The loop every vendor shares: send, yield ``Start`` once accepted, then what the mapper makes of the bytes."""
    async with open_stream(client, request, provider, read_error) as response:
        yield Start()
        # Raw bytes skip httpx's decoder layers; a compressed body (some proxies gzip SSE) needs them.
        chunks = response.aiter_bytes() if "content-encoding" in response.headers else response.aiter_raw()
        delivered = 0  # content events, so that an error can say how far the answer came
        try:
            async for chunk in chunks:
                for event in mapper.feed(chunk):
                    if type(event) in CONTENT_KINDS:
                        delivered += 1
                    yield event
        except httpx.TransportError as exc:
            raise mid_answer_error(provider, exc, delivered) from exc
        for event in mapper.end():
            yield event


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms``, then ``retry-after`` in seconds or as an HTTP date; capped."""
    if (ms := headers.get("retry-after-ms")) is not None:
        seconds = to_float(ms)
        return None if seconds is None else min(seconds / 1000, RETRY_AFTER_CAP)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = to_float(raw)
    if seconds is None:
        try:
            seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def to_float(raw: str) -> float | None:
    """A finite number, or None: a peer's "nan" or "inf" must not reach arithmetic that rounds it."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def common_error(body: bytes) -> VendorError:
    """The message in vendors' error bodies: ``{"error": {"message"}}``, ``{"error": "..."}`` or ``{"message"}``."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return VendorError(text[:300] if text and not text.startswith("<") else None)
    if isinstance(data, list) and data:  # Gemini wraps errors in an array without alt=sse
        data = data[0]
    if not isinstance(data, dict):
        return VendorError()
    error = data.get("error", data)
    if isinstance(error, str):
        return VendorError(error)
    message = error.get("message") if isinstance(error, dict) else None
    return VendorError(message if isinstance(message, str) else None)


T = TypeVar("T")


def decode_json(decoder: msgspec.json.Decoder[T], data: str | bytes, provider: str) -> T:
    """One vendor event, decoded into its wire struct; anything else is the provider's protocol error."""
    try:
        return decoder.decode(data)
    except msgspec.DecodeError:
        raise protocol_error(provider, "an event that is not valid JSON") from None


class Named(Protocol):
    model: str | None


N = TypeVar("N", bound=Named)


class ModelOnce(Generic[T]):
    """Decodes a stream's events, the first with a decoder that also reads the model name every event
    repeats (so it is read once, not per event) and reported as ``UpstreamModel``."""

    def __init__(self, first: msgspec.json.Decoder[N], rest: msgspec.json.Decoder[T]):
        self.first: msgspec.json.Decoder[Any] | None = first
        self.rest = rest

    def decode(self, data: str | bytes, provider: str, events: list[Event]) -> T:
        if self.first is None:
            return decode_json(self.rest, data, provider)
        event = decode_json(self.first, data, provider)
        self.first = None
        if event.model:
            events.append(UpstreamModel(event.model))
        return cast(T, event)


def protocol_error(provider: str, what: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"{provider} sent {what}, which is not part of its documented stream.")


def timed(request: httpx.Request, deployment: Deployment) -> httpx.Request:
    """Hand-built requests carry no timeouts unless given: httpx reads them from this extension."""
    connect = deployment.timeouts.connect if deployment.timeouts else None
    request.extensions["timeout"] = {**REQUEST_TIMEOUTS, **({"connect": connect} if connect else {})}
    return request


class HttpProvider:
    """What every vendor's provider shares: a name, a pooled client, headers with its key, the stream loop.

    A vendor supplies its default base URL, how it sends its key, the request and the stream mapper.
    """

    models: tuple[str, ...] = ()
    default_base_url = ""
    accept = "text/event-stream"
    dialect: str | None = None  # the client dialect it also takes as it came (``same_dialect``), if any
    prefill = False  # whether a final assistant message is continued rather than answered

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.client = client
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        auth = self.auth_headers(api_key) if api_key else {}
        self.headers = {"content-type": "application/json", "accept": self.accept, **auth, **(headers or {})}
        # Its other APIs (OpenAI's Responses), each a provider of its own on this client; the catalog adds them.
        self.apis: dict[str, Provider] = {}

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def build_request(self, request: ChatRequest, deployment: Deployment) -> httpx.Request:
        raise NotImplementedError

    def mapper(self, request: ChatRequest, deployment: Deployment) -> StreamMapper:
        raise NotImplementedError

    def same_dialect(
        self, request: ChatRequest, deployment: Deployment, original: Original
    ) -> tuple[httpx.Request, StreamMapper]:
        """The request and stream reader for a client that speaks this provider's own API."""
        raise NotImplementedError

    def as_it_came(self, url: str, original: Original, deployment: Deployment, stream: bool) -> httpx.Request:
        """The client's own body with only the model rewritten, and its forwarded headers; a whole
        answer is asked for as JSON."""
        body = {**original.fields, "model": msgspec.Raw(JSON_ENCODER.encode(deployment.model))}
        request = self.post(url, JSON_ENCODER.encode(body))
        request.headers.update(original.headers)
        if not stream:
            request.headers["accept"] = "application/json"
        return request

    def read_error(self, body: bytes) -> VendorError:
        return common_error(body)

    def post(self, url: str, body: bytes) -> httpx.Request:
        return httpx.Request("POST", url, headers=self.headers, content=body)

    def stream(
        self, request: ChatRequest, deployment: Deployment, original: Original | None = None
    ) -> AsyncGenerator[Event, None]:
        if original is not None and original.dialect == self.dialect:
            http_request, mapper = self.same_dialect(request, deployment, original)
        else:
            http_request, mapper = self.build_request(request, deployment), self.mapper(request, deployment)
        timed(http_request, deployment)
        return upstream_events(self.client, http_request, self.name, self.read_error, mapper)

    async def fetch(self, url: str, body: bytes, deployment: Deployment) -> bytes:
        """POST ``body`` and read the whole JSON answer (bounded), for APIs that do not stream (embeddings)."""
        request = timed(self.post(url, body), deployment)
        request.headers["accept"] = "application/json"
        reader = WholeBody(self.name)
        async with open_stream(self.client, request, self.name, self.read_error) as response:
            async for chunk in response.aiter_bytes():
                reader.feed(chunk)
        return bytes(reader.body)

    async def aclose(self) -> None:
        await self.client.aclose()
