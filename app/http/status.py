"""The read-only routes: the model list, health, metrics, the MCP tool listing and the OpenAPI document."""

from __future__ import annotations

import asyncio

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import Response

from app import __version__
from app.ops.metrics import multiprocess_dir
from app.services import services_of
from app.tools.registry import registry_of

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
    router = services_of(request).router
    models = [Model(m.id, m.provider) for m in router.list_models()]
    return Response(ENCODER.encode(ModelList(models, sorted(router.providers))), media_type="application/json")


async def get_health(request: Request) -> Response:
    providers = sorted(services_of(request).router.providers)
    return Response(ENCODER.encode(Health(__version__, providers)), media_type="application/json")


async def get_openapi_spec(request: Request) -> Response:
    return Response(services_of(request).spec, media_type="application/yaml")


async def get_metrics(request: Request) -> Response:
    registry = REGISTRY
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def list_mcp_tools(request: Request) -> Response:
    registry = registry_of(request)
    never_tried = [name for name, state in registry.servers.items() if state.refreshed_at is None]
    await asyncio.gather(*(registry.refresh(name) for name in never_tried))
    return Response(ENCODER.encode(registry.listing()), media_type="application/json")
