"""Gateway keys: when configured, every API route needs one, sent as ``Authorization: Bearer`` or
``x-api-key``. Keys are compared in constant time, never echoed, and carry a name for logs and metrics.
``/health`` and the OpenAPI document stay open; ``/metrics`` too unless config protects it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import REQUEST_ID_KEY, ApiError, ErrorWriter, error_response
from app.http.access import ACCESS_KEY
from app.limits.quotas import Quotas
from app.limits.rules import Budgets, KeyRules, RateLimits

OPEN_PATHS = frozenset({"/health", "/health/ready", "/openapi.yaml", "/"})  # the page asks for a key itself
OPEN_PREFIXES = ("/static/",)
KEY_NAME_KEY = "gateway.key_name"  # in the scope: the name of the key that authenticated the request
KEY_ADMIN_KEY = "gateway.key_admin"  # in the scope: that key may see every key's usage
# A key over its limit may still see its usage: how else would it learn why.
USAGE_PATH = "/api/v1/usage"
# The routes that call a model: their limits are met in the intake (or the embeddings call), per call.
MODEL_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/completions", "/v1/embeddings", "/api/v1/chat"}
    | {"/ws/chat"}
)
UNCOUNTED_PATHS = MODEL_PATHS | {USAGE_PATH}


class GatewayKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    key: str
    rate_limits: RateLimits | None = None  # over auth.rate_limits, field by field
    budgets: Budgets | None = None  # over auth.budgets
    admin: bool = False  # sees every key's usage


class AuthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keys: list[GatewayKey] = []
    protect_metrics: bool = False
    rate_limits: RateLimits = RateLimits()  # every key's, unless it says otherwise
    budgets: Budgets = Budgets()

    def rules(self, keys: list[GatewayKey]) -> dict[str, KeyRules]:
        """Each key's limits and budgets, its own over the defaults."""
        return {
            key.name: KeyRules(
                (key.rate_limits or RateLimits()).over(self.rate_limits), (key.budgets or Budgets()).over(self.budgets)
            )
            for key in keys
        }


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
    parse their own); OpenAI's by default. Model calls meet their key's limits in the intake, where
    their size is known; every other route counts against requests per minute here."""

    def __init__(
        self,
        app: ASGIApp,
        keys: list[GatewayKey],
        protect_metrics: bool,
        quotas: Quotas | None,
        writer_for: Callable[[Scope], ErrorWriter] = openai_errors,
    ):
        self.app = app
        self.writer_for = writer_for
        self.keys = [(key.name, key.key.encode()) for key in keys if key.key]
        self.admins = frozenset(key.name for key in keys if key.admin)
        self.open_paths = OPEN_PATHS if protect_metrics else OPEN_PATHS | {"/metrics"}
        self.quotas = quotas

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
        scope[KEY_ADMIN_KEY] = name in self.admins
        record = scope.get(ACCESS_KEY)
        if record is not None:
            record.key_name = name
        if self.quotas is not None and path not in UNCOUNTED_PATHS:
            try:
                await self.quotas.count(name)
            except ApiError as refusal:
                await self.deny(scope, receive, send, refusal)
                return
        await self.app(scope, receive, send)

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
