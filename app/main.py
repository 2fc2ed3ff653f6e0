"""The ASGI application: routes from openapi.yaml, the middleware, and the providers' lifespan."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from app.config import GatewayConfig, check_providers, load_config
from app.errors import EXCEPTION_HANDLERS
from app.exchange import SERVER_SEND_KEY
from app.gateway import Gateway
from app.logs import configure_logging
from app.middleware import RequestContextMiddleware
from app.openapi import build_routes, load_spec
from app.routes import HANDLERS
from app.settings import Settings
from app.shutdown import SHUTDOWN
from providers.base import Provider
from providers.catalog import HOW_TO_ENABLE, ProviderSpec, build_provider, env_specs
from providers.http import make_client
from providers.router import Router
from providers.simulated import SimulatedProvider


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
    configure_logging(settings.log_level)
    if config is None:
        config = load_config(settings.config_path)
    specs = {**env_specs(os.environ), **config.providers}
    if providers is None:
        providers = [SimulatedProvider(), *build_providers(specs, config.http.transport)]
    check_providers(config, {p.name for p in providers} | set(HOW_TO_ENABLE))
    disabled = {name: hint for name, hint in HOW_TO_ENABLE.items() if name not in specs}
    spec, raw_spec = load_spec()
    router = Router(providers, config.models, disabled)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        SHUTDOWN.install(asyncio.get_running_loop())
        try:
            yield
        finally:
            await router.aclose()

    app = GatewayApp(
        routes=build_routes(spec, HANDLERS),
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    timeouts = {name: spec.timeouts for name, spec in specs.items() if spec.timeouts is not None}
    app.state.gateway = Gateway(router, config, raw_spec, timeouts)
    return app


def build_providers(specs: dict[str, ProviderSpec], transport: str) -> list[Provider]:
    """One provider per spec, each over its own pooled client; the lifespan closes them."""
    return [build_provider(name, spec, make_client(transport)) for name, spec in specs.items()]
