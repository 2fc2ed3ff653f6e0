"""The composition root: the ASGI application, its handler table, its middleware, and its lifespan."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from app.chat.completions import create_chat_completion
from app.chat.embeddings import create_embedding
from app.chat.intake import Intake
from app.chat.messages import count_message_tokens, create_message, errors_for
from app.chat.native import create_native_chat
from app.chat.outlets import SERVER_SEND_KEY
from app.chat.responses import create_response, delete_response, get_response
from app.chat.text_completions import create_completion
from app.chat.websocket import chat_websocket
from app.config import ConfigError, ConversationSettings, GatewayConfig, check_providers, load_config
from app.conversations.api import create_conversation, delete_conversation, get_conversation, list_conversations
from app.conversations.database import DatabaseError
from app.conversations.engines import open_database
from app.conversations.responses import StoredResponses
from app.conversations.store import ConversationStore
from app.conversations.turns import Conversations
from app.errors import EXCEPTION_HANDLERS
from app.http.access import RequestContextMiddleware
from app.http.auth import AuthMiddleware, GatewayKey, keys_from_env
from app.http.page import get_chat_page, get_static_asset
from app.http.routing import Handler, build_routes, load_spec
from app.http.status import (
    get_health,
    get_metrics,
    get_model,
    get_openapi_spec,
    get_readiness,
    list_mcp_tools,
    list_models,
)
from app.http.usage import get_usage
from app.limits.quotas import Quotas
from app.ops import metrics
from app.ops.logs import configure_logging
from app.ops.shutdown import SHUTDOWN
from app.ops.tracing import TRACING
from app.services import Services, quotas_for
from app.settings import Settings
from app.tools.registry import McpRegistry
from providers import make_client
from providers.base import Provider
from providers.catalog import HOW_TO_ENABLE, ProviderSpec, build_provider, env_specs
from providers.embeddings import HashingEmbedder
from providers.router import Router
from providers.simulated import SimulatedProvider

# The handler of each operationId in openapi.yaml (and of each WebSocket in its x-websockets).
HANDLERS: dict[str, Handler] = {
    "createChatCompletion": create_chat_completion,
    "createNativeChat": create_native_chat,
    "createMessage": create_message,
    "createResponse": create_response,
    "getResponse": get_response,
    "deleteResponse": delete_response,
    "createCompletion": create_completion,
    "createEmbedding": create_embedding,
    "countMessageTokens": count_message_tokens,
    "chatWebSocket": chat_websocket,
    "createConversation": create_conversation,
    "listConversations": list_conversations,
    "getConversation": get_conversation,
    "deleteConversation": delete_conversation,
    "listMcpTools": list_mcp_tools,
    "getUsage": get_usage,
    "getChatPage": get_chat_page,
    "getStaticAsset": get_static_asset,
    "listModels": list_models,
    "getModel": get_model,
    "getHealth": get_health,
    "getReadiness": get_readiness,
    "getMetrics": get_metrics,
    "getOpenApiSpec": get_openapi_spec,
}
log = structlog.get_logger("gateway")


class GatewayApp(Starlette):
    """Starlette, keeping the server's own ``send`` in the scope for the stream relay.

    A response start goes through every middleware; the body chunks of a stream then go straight
    to the server, skipping four wrapper calls per chunk that only ever look at the start.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND_KEY] = send
        await super().__call__(scope, receive, send)


def create_app(config: GatewayConfig | None = None, providers: Sequence[Provider] | None = None) -> Starlette:
    """Build the gateway; without ``config``, read the file GATEWAY_CONFIG names (if any).

    ``providers`` replaces the built-in set, so tests can put a fake upstream behind the real pipeline.
    """
    settings = Settings.from_env()
    if config is None:
        config = load_config(settings.config_path)
    specs = {**env_specs(os.environ), **config.providers}
    keys = [*config.auth.keys, *keys_from_env(os.environ.get("GATEWAY_API_KEYS", ""))]
    secrets = [spec.api_key for spec in specs.values() if spec.api_key] + [key.key for key in keys]
    configure_logging(settings.log_level, secrets)
    if providers is None:
        providers = [SimulatedProvider(), HashingEmbedder(), *build_providers(specs, config.http.transport)]
    check_providers(config, {p.name for p in providers} | set(HOW_TO_ENABLE))
    disabled = {name: hint for name, hint in HOW_TO_ENABLE.items() if name not in specs}
    spec, raw_spec = load_spec()
    metrics.ROUTES.update(spec["paths"], spec.get("x-websockets", {}))
    router = Router(providers, config.models, disabled)
    conversations = build_conversations(config.conversations, settings.database_url)
    mcp = McpRegistry(config.mcp_servers, make_client(config.http.transport), config.tool_loop.refresh_seconds)

    tracing_on = config.tracing.enabled or any(
        os.environ.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        SHUTDOWN.install(asyncio.get_running_loop(), config.reliability.drain_seconds)
        if tracing_on and TRACING.tracer is None:  # in each worker: its exporter's thread is its own
            TRACING.start()
        try:
            await conversations.ready()  # the schema is created or migrated before the first request
        except DatabaseError as exc:  # the gateway serves on; conversation requests get a 503 until it answers
            log.error("conversation_store_unavailable", error=str(exc))
        await mcp.start()  # every MCP server's tools; one that is down is retried, never fatal
        try:
            yield
        finally:
            await mcp.close()
            await conversations.close()
            await quotas.ledger.close()
            await router.aclose()
            if tracing_on:
                await asyncio.to_thread(TRACING.stop)  # exports what is left, off the loop
            metrics.mark_process_dead()

    quotas = quotas_for(config, keys, settings.redis_url)
    app = GatewayApp(
        routes=build_routes(spec, HANDLERS),
        middleware=middleware(config, keys, quotas),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    timeouts = {name: spec.timeouts for name, spec in specs.items() if spec.timeouts is not None}
    services = Services(router, config, raw_spec, timeouts, log_content=settings.log_content, quotas=quotas)
    app.state.services = services
    app.state.conversations = conversations
    app.state.mcp = mcp
    app.state.intake = Intake(services, conversations, mcp, StoredResponses(conversations))
    return app


def middleware(config: GatewayConfig, keys: list[GatewayKey], quotas: Quotas) -> list[Middleware]:
    """CORS outermost (so preflights need no key and errors stay readable), then request ids and the
    access log, then gateway keys and their rate limits."""
    stack = []
    if config.cors.allow_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.cors.allow_origins,
                allow_credentials=config.cors.allow_credentials,
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=[
                    *("authorization", "content-type", "x-api-key", "x-request-id", "x-conversation-id"),
                    *("anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access"),
                ],
                expose_headers=["x-request-id", "request-id", "x-gateway-deployment", "retry-after"],
            )
        )
    stack.append(Middleware(RequestContextMiddleware))
    if keys:
        stack.append(
            Middleware(
                AuthMiddleware,
                keys=keys,
                protect_metrics=config.auth.protect_metrics,
                quotas=quotas,
                writer_for=errors_for,
            )
        )
    return stack


def build_conversations(settings: ConversationSettings, database_url: str | None) -> Conversations:
    """The conversation store: DATABASE_URL when set, else the config's (SQLite by default). Opened lazily."""
    try:
        database = open_database(database_url or settings.database_url, settings.pool_size)
    except DatabaseError as exc:
        raise ConfigError(str(exc)) from None
    return Conversations(ConversationStore(database), settings)


def build_providers(specs: dict[str, ProviderSpec], transport: str) -> list[Provider]:
    """One provider per spec, each over its own pooled client; the lifespan closes them."""
    return [build_provider(name, spec, make_client(transport)) for name, spec in specs.items()]
