"""What the request handlers share for the life of the process: router, balancer, config, spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.requests import Request

from app.config import DEFAULT_TIMEOUTS, GatewayConfig
from app.conversations.turns import Conversations
from providers.balancer import Balancer
from providers.base import Deployment, Timeouts
from providers.router import Router

if TYPE_CHECKING:  # app.mcp_tools needs gateway_of from here
    from app.mcp_tools import McpRegistry


class Gateway:
    def __init__(
        self,
        router: Router,
        config: GatewayConfig,
        spec: bytes,
        conversations: Conversations,
        mcp: McpRegistry,
        provider_timeouts: Mapping[str, Timeouts] | None = None,
        *,
        log_content: bool = False,
    ):
        self.conversations = conversations
        self.mcp = mcp
        self.router = router
        self.log_content = log_content
        self.config = config
        self.spec = spec
        self.provider_timeouts = dict(provider_timeouts or {})
        self.balancer = Balancer(config.reliability.cooldown)

    def timeouts_for(self, deployment: Deployment, model: Timeouts | None) -> Timeouts:
        """The deployment's own, else the model's, else its provider's, else the gateway's defaults."""
        layers = (self.config.reliability.timeouts, self.provider_timeouts.get(deployment.provider), model)
        timeouts = DEFAULT_TIMEOUTS
        for layer in (*layers, deployment.timeouts):
            if layer is not None:
                timeouts = layer.over(timeouts)
        return timeouts


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
