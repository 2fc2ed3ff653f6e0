"""What went wrong upstream, in the gateway's words: each vendor's errors (status, in-band, broken
connections, a prompt too long) mapped to one ``ProviderError`` each, with Retry-After read once.

The upstream status mapping is the table ``STATUS_ERRORS``; ``broken`` says what broke in plain words,
never the HTTP library's repr.
"""

from __future__ import annotations

import email.utils
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import httpx
import msgspec

from providers.base import (
    ContextLengthError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    RateLimitedError,
    UpstreamAuthError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

RETRY_AFTER_CAP = 3600.0


def connect_error(provider: str, exc: httpx.TransportError) -> ProviderError:
    if timed_out(exc):
        return UpstreamTimeoutError(f"{provider} did not answer in time: {broken(exc)}, before its headers.")
    return UpstreamUnavailableError(f"The gateway could not reach {provider}: {broken(exc)}, before its headers.")


def mid_answer_error(provider: str, exc: httpx.TransportError, chunks: int | None) -> ProviderError:
    """A connection that broke after the headers: which provider, and how far its stream had come, in
    the chunks the socket delivered (counted per read, not per event: nothing extra per token)."""
    if chunks is None:  # the caller read the body itself
        where = "mid-answer"
    elif chunks:
        where = f"mid-answer, after {chunks:,} chunk{'s' * (chunks != 1)} of its stream"
    else:
        where = "after its headers, before any of its stream"
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


def protocol_error(provider: str, what: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"{provider} sent {what}, which is not part of its documented stream.")
