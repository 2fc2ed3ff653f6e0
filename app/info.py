"""The read-only routes: the model list, health, and the OpenAPI document itself."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app import __version__
from app.gateway import gateway_of

ENCODER = msgspec.json.Encoder()


class Model(msgspec.Struct):
    id: str
    owned_by: str
    object: str = "model"
    created: int = 0


class ModelList(msgspec.Struct):
    data: list[Model]
    providers: list[str]  # our extension: the providers enabled now
    object: str = "list"


class Health(msgspec.Struct):
    version: str
    providers: list[str]
    status: str = "ok"


async def list_models(request: Request) -> Response:
    router = gateway_of(request).router
    models = [Model(m.id, m.provider) for m in router.list_models()]
    return Response(ENCODER.encode(ModelList(models, sorted(router.providers))), media_type="application/json")


async def get_health(request: Request) -> Response:
    providers = sorted(gateway_of(request).router.providers)
    return Response(ENCODER.encode(Health(__version__, providers)), media_type="application/json")


async def get_openapi_spec(request: Request) -> Response:
    return Response(gateway_of(request).spec, media_type="application/yaml")
