"""The read-only routes: the model list, health and readiness, metrics, the MCP tools and the OpenAPI document."""

from __future__ import annotations

import asyncio

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import Response

from app import __version__
from app.dialects.anthropic import MESSAGES
from app.errors import ERROR_WRITER_KEY, ApiError
from app.ops.metrics import circuits, multiprocess_dir
from app.ops.shutdown import SHUTDOWN
from app.services import services_of
from app.tools.registry import registry_of

ENCODER = msgspec.json.Encoder()
EPOCH = "1970-01-01T00:00:00Z"  # the gateway does not know when a model was made; OpenAI's format says 0


class Model(msgspec.Struct):
    id: str
    owned_by: str
    object: str = "model"
    created: int = 0


class ModelList(msgspec.Struct):
    data: list[Model]
    providers: list[str]  # our extension: the providers enabled now
    object: str = "list"


class AnthropicModel(msgspec.Struct):
    id: str
    display_name: str
    type: str = "model"
    created_at: str = EPOCH


class AnthropicModelList(msgspec.Struct):
    data: list[AnthropicModel]
    first_id: str | None
    last_id: str | None
    has_more: bool = False


class Health(msgspec.Struct):
    version: str
    providers: list[str]
    status: str = "ok"


def for_anthropic(request: Request) -> bool:
    """Anthropic's clients send ``anthropic-version``: they get its formats, and its error envelope."""
    if "anthropic-version" not in request.headers:
        return False
    request.scope[ERROR_WRITER_KEY] = MESSAGES.error_response
    return True


async def list_models(request: Request) -> Response:
    router = services_of(request).router
    models = router.list_models()
    if for_anthropic(request):
        data = [AnthropicModel(m.id, m.id) for m in models]
        first, last = (data[0].id, data[-1].id) if data else (None, None)
        return Response(ENCODER.encode(AnthropicModelList(data, first, last)), media_type="application/json")
    listed = [Model(m.id, m.provider) for m in models]
    return Response(ENCODER.encode(ModelList(listed, sorted(router.providers))), media_type="application/json")


async def get_model(request: Request) -> Response:
    anthropic = for_anthropic(request)
    model_id = request.path_params["model_id"]
    found = next((m for m in services_of(request).router.list_models() if m.id == model_id), None)
    if found is None:
        raise ApiError(
            404,
            f"There is no model {model_id[:100]!r} on this gateway. GET /v1/models lists them; a provider's own "
            "models can be named in a request as 'provider/model'.",
            code="model_not_found",
            type="not_found_error",
            param="model",
        )
    model = AnthropicModel(found.id, found.id) if anthropic else Model(found.id, found.provider)
    return Response(ENCODER.encode(model), media_type="application/json")


async def get_health(request: Request) -> Response:
    providers = sorted(services_of(request).router.providers)
    return Response(ENCODER.encode(Health(__version__, providers)), media_type="application/json")


async def get_readiness(request: Request) -> Response:
    """503 while the gateway drains (after SIGTERM) or while a store it needs does not answer."""
    services, conversations = services_of(request), request.app.state.conversations
    config, ledger = services.config, services.quotas.ledger
    checks: dict[str, tuple[bool, asyncio.Future[bool] | None]] = {}
    if ledger.shared:
        checks["limits"] = (config.limits.on_redis_down == "closed", asyncio.ensure_future(ledger.ping()))
    checks["conversations"] = (config.conversations.required, asyncio.ensure_future(conversations.ping()))
    stores = {}
    for name, (required, check) in checks.items():
        up = await check if check is not None else True
        stores[name] = {"status": "up" if up else "down", "required": required}
    draining = SHUTDOWN.draining_since is not None
    down = [name for name, store in stores.items() if store["required"] and store["status"] == "down"]
    status = "draining" if draining else "unavailable" if down else "ready"
    body = ENCODER.encode({"status": status, "stores": stores})
    return Response(body, status_code=503 if draining or down else 200, media_type="application/json")


async def get_openapi_spec(request: Request) -> Response:
    return Response(services_of(request).spec, media_type="application/yaml")


async def get_metrics(request: Request) -> Response:
    circuits(services_of(request).balancer.circuits())
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
