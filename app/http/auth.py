"""Gateway keys: when configured, every API route needs one, sent as ``Authorization: Bearer`` or
``x-api-key``. Keys are compared in constant time, never echoed, and carry a name for logs and metrics.
``/health`` and the OpenAPI document stay open; ``/metrics`` too unless config protects it.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable, Mapping

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import REQUEST_ID_KEY, ApiError, ErrorWriter, error_response
from app.http.access import ACCESS_KEY
from app.http.ratelimit import RateLimiter, RateLimits

OPEN_PATHS = frozenset({"/health", "/openapi.yaml", "/"})  # the page asks for a key itself
OPEN_PREFIXES = ("/static/",)
KEY_NAME_KEY = "gateway.key_name"  # in the scope: the name of the key that authenticated the request


class GatewayKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    key: str


class AuthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keys: list[GatewayKey] = []
    protect_metrics: bool = False
    rate_limits: RateLimits = RateLimits()


def keys_from_env(raw: str) -> list[GatewayKey]:
    """GATEWAY_API_KEYS: comma-separated ``key`` or ``name=key`` entries."""
    keys = []
    for number, entry in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        name, equals, key = entry.partition("=")
        keys.append(GatewayKey(name, key) if equals else GatewayKey(f"key-{number}", entry))
    return keys


def openai_errors(scope: Scope) -> ErrorWriter:
    return error_response


class AuthMiddleware:
    """``writer_for`` picks the envelope of a refusal before any route has run (Anthropic's clients
    parse their own); OpenAI's by default."""

    def __init__(
        self,
        app: ASGIApp,
        keys: list[GatewayKey],
        protect_metrics: bool,
        limiter: RateLimiter | None,
        writer_for: Callable[[Scope], ErrorWriter] = openai_errors,
    ):
        self.app = app
        self.writer_for = writer_for
        self.keys = [(key.name, key.key.encode()) for key in keys if key.key]
        self.open_paths = OPEN_PATHS if protect_metrics else OPEN_PATHS | {"/metrics"}
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        open_path = path in self.open_paths or path.startswith(OPEN_PREFIXES)
        if not self.keys or scope["type"] not in ("http", "websocket") or open_path:
            await self.app(scope, receive, send)
            return
        name = self.match(presented_key(dict(scope["headers"])))
        if name is None:
            await self.deny(scope, receive, send, unauthorized(bool(presented_key(dict(scope["headers"])))))
            return
        scope[KEY_NAME_KEY] = name
        record = scope.get(ACCESS_KEY)
        if record is not None:
            record.key_name = name
        wait = self.limiter.acquire(name) if self.limiter else None
        if wait is not None:
            await self.deny(scope, receive, send, rate_limited(name, wait))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if self.limiter:
                self.limiter.release(name)

    async def deny(self, scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
        if scope["type"] == "websocket":  # before the socket is accepted, a close is all a client can be told
            await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
            return
        response = self.writer_for(scope)(error, str(scope.get(REQUEST_ID_KEY, "")))
        await response(scope, receive, send)

    def match(self, presented: bytes) -> str | None:
        """The name of the key presented, comparing with every key in constant time, with no early exit."""
        found = None
        for name, key in self.keys:
            if hmac.compare_digest(key, presented):
                found = name
        return found


def owner_of(scope: Scope) -> str:
    """Whom stored things belong to: the key's name, or everyone ("") when the gateway has no keys."""
    return str(scope.get(KEY_NAME_KEY, ""))


def presented_key(headers: Mapping[bytes, bytes]) -> bytes:
    authorization = headers.get(b"authorization", b"")
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return headers.get(b"x-api-key", b"").strip()


def unauthorized(presented: bool) -> ApiError:
    what = "The key sent is not one of this gateway's keys." if presented else "This gateway needs a key."
    return ApiError(
        401,
        f"{what} Send a gateway key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'; ask the "
        "gateway's operator for one.",
        code="invalid_api_key" if presented else "missing_api_key",
        type="authentication_error",
        headers={"WWW-Authenticate": "Bearer"},
    )


def rate_limited(name: str, wait: float) -> ApiError:
    seconds = max(1, math.ceil(wait))
    return ApiError(
        429,
        f"The gateway key {name!r} is over its rate limit; retry after {seconds} s.",
        code="rate_limit_exceeded",
        type="rate_limit_error",
        headers={"Retry-After": str(seconds)},
    )
