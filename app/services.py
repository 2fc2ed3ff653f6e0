"""What every stage shares for the life of the process: the router, the balancer, the config, the spec.

A plain container, built once by ``app.main``. The conversation store and the MCP registry are not in
it: they live a layer above (``app.conversations``, ``app.tools``), and the intake that uses them is
built beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import HTTPConnection

from app.config import DEFAULT_TIMEOUTS, GatewayConfig, with_first_token
from app.http.auth import GatewayKey
from app.limits.ledger import Ledger
from app.limits.memory import MemoryLedger
from app.limits.quotas import Quotas
from app.limits.redis_ledger import RedisLedger
from app.limits.rules import KeyRules, Prices
from providers.balancer import Balancer
from providers.base import Deployment, Timeouts
from providers.router import Router


class Services:
    def __init__(
        self,
        router: Router,
        config: GatewayConfig,
        spec: bytes,
        provider_timeouts: Mapping[str, Timeouts] | None = None,
        *,
        log_content: bool = False,
        quotas: Quotas | None = None,
    ):
        self.router = router
        self.config = config
        self.quotas = quotas or quotas_for(config, [], None)  # limits, budgets and usage per gateway key
        self.spec = spec
        self.log_content = log_content
        self.provider_timeouts = dict(provider_timeouts or {})
        self.balancer = Balancer(config.reliability.cooldown)

    def timeouts_for(self, deployment: Deployment, model: Timeouts | None, *, thinking: bool = False) -> Timeouts:
        """The deployment's own, else the model's, else its provider's, else the gateway's defaults;
        ``thinking``: the request asks for reasoning, which may keep the first token for minutes."""
        layers = (self.config.reliability.timeouts, self.provider_timeouts.get(deployment.provider), model)
        timeouts = DEFAULT_TIMEOUTS
        for layer in (*layers, deployment.timeouts):
            if layer is not None:
                timeouts = layer.over(timeouts)
        return with_first_token(timeouts, thinking)


def quotas_for(config: GatewayConfig, keys: list[GatewayKey], redis_url: str | None) -> Quotas:
    """The keys' limits and budgets, counted in Redis when ``redis_url`` (or the config) names one."""
    limits = config.limits
    url = redis_url or limits.redis_url
    ledger: Ledger = RedisLedger(url, limits.redis_prefix) if url else MemoryLedger()
    total = config.reliability.timeouts.total or DEFAULT_TIMEOUTS.total or 0.0
    return Quotas(
        ledger,
        config.auth.rules(keys),
        KeyRules(),
        Prices(config.prices),
        output_allowance=limits.output_allowance,
        fail_open=limits.on_redis_down == "open",
        lease=total + 60,  # a stream slot outlives the longest call, in case its process dies holding it
    )


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services
