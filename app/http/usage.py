"""``GET /api/v1/usage``: the caller's key's limits, budgets and usage; an admin key sees every key's."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.errors import JSON, ApiError
from app.http.auth import KEY_ADMIN_KEY, owner_of
from app.services import services_of
from providers.request import JSON_ENCODER

KEY_NAME_LIMIT = 200


async def get_usage(request: Request) -> Response:
    quotas = services_of(request).quotas
    caller, admin = owner_of(request.scope), bool(request.scope.get(KEY_ADMIN_KEY))
    asked = request.query_params.get("key")
    if asked is not None and not 1 <= len(asked) <= KEY_NAME_LIMIT:
        raise ApiError(
            400,
            f"The key parameter must name a gateway key in 1 to {KEY_NAME_LIMIT} characters, got {len(asked)}. "
            "Leave it out to see your own key's usage.",
            code="invalid_value",
            param="key",
        )
    if asked is not None and asked != caller and not admin:
        raise ApiError(
            403,
            f"The key {caller!r} may see only its own usage; another key's needs an admin key "
            "(admin: true beside its name in auth.keys). Leave out ?key= to see your own.",
            code="forbidden",
            type="permission_error",
            param="key",
        )
    if asked is not None and admin and asked not in quotas.rules:
        raise ApiError(
            404,
            f"There is no gateway key named {asked!r}. Leave out ?key= to see every key.",
            code="key_not_found",
            param="key",
        )
    names = [asked] if asked is not None else sorted(quotas.rules) if admin else [caller]
    data = [await quotas.report(name) for name in names]
    body = JSON_ENCODER.encode({"object": "list", "shared": quotas.ledger.shared, "data": data})
    return Response(body, media_type=JSON)
