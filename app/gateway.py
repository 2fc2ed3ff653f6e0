"""What the request handlers share for the life of the process: the router, the config, the spec."""

from __future__ import annotations

from starlette.requests import Request

from app.config import GatewayConfig
from providers.router import Router


class Gateway:
    def __init__(self, router: Router, config: GatewayConfig, spec: bytes):
        self.router = router
        self.config = config
        self.spec = spec


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
