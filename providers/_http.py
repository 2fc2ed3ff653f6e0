"""The shared HTTP machinery: one client factory, the request and stream loop every vendor shares.

Every provider gets one pooled ``httpx.AsyncClient`` for the life of the process. What runs beneath
httpx is one setting (``TRANSPORTS``), so the transport can be chosen by measurement. What failures
mean is ``providers._errors``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar, cast

import httpx
import msgspec

from providers._errors import (
    ErrorReader,
    VendorError,
    common_error,
    connect_error,
    mid_answer_error,
    protocol_error,
    status_error,
)
from providers.base import (
    Deployment,
    Event,
    Original,
    Provider,
    Start,
    UpstreamModel,
)
from providers.request import JSON_ENCODER, ChatRequest
from providers.tracecontext import with_trace_context

# Above the concurrency we promise: httpx's default of 100 connections is a silent ceiling.
POOL_LIMITS = httpx.Limits(max_connections=4096, max_keepalive_connections=1024, keepalive_expiry=30)
# Reads are bounded per socket read only as a last resort; event-level timeouts belong to the relay.
TIMEOUTS = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=5.0)
REQUEST_TIMEOUTS = TIMEOUTS.as_dict()
MAX_ERROR_BODY = 64 * 1024
NOT_AN_ANSWER = frozenset({"text/html", "application/xhtml+xml", "text/plain", "text/xml"})


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


class NoCookies(httpx.Cookies):
    """A jar that keeps nothing. One client serves every user of the gateway, so a cookie an upstream
    set for one request would ride along on everyone's; and reading each response's Set-Cookie headers
    through urllib's cookie machinery was one of a request's larger fixed costs."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def make_client(transport: str = "httpx") -> httpx.AsyncClient:
    """The one place clients are built: pool limits, keep-alive and timeouts, over the chosen transport."""
    # The native transport reads the proxy variables itself; httpx's own reading would route around it.
    client = httpx.AsyncClient(transport=TRANSPORTS[transport](), timeout=TIMEOUTS, trust_env=transport != "native")
    client._cookies = NoCookies()  # the public setter would copy it into an ordinary jar
    return client


@functools.lru_cache(maxsize=512)
def parsed_url(url: str) -> httpx.URL:
    """An endpoint's URL, parsed once (httpx parses a string on every request, host checks included);
    bounded, since a model name can be part of the URL."""
    return httpx.URL(url)


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


async def read_bounded(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return bytes(body[:MAX_ERROR_BODY])


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
        received = 0  # reads, so that an error can say how far the stream came
        try:
            async for chunk in chunks:
                received += 1
                for event in mapper.feed(chunk):
                    yield event
        except httpx.TransportError as exc:
            raise mid_answer_error(provider, exc, received) from exc
        for event in mapper.end():
            yield event


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
        return httpx.Request("POST", parsed_url(url), headers=self.prepared_headers, content=body)

    @functools.cached_property
    def prepared_headers(self) -> httpx.Headers:
        """``headers`` as httpx holds them, built at the first request: each request copies the list."""
        return httpx.Headers(self.headers)

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
