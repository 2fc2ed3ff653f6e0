"""Model names to plans: configured aliases (one deployment or several), built-in models, ``provider/model``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Literal, cast

import msgspec

from providers.balancer import Strategy
from providers.base import Deployment, ModelNotFoundError, Provider, SameDialectProvider, Timeouts


def shorten(name: str, limit: int = 100) -> str:
    """A client's model name as shown back in a message: long ones are cut, not echoed whole."""
    return name if len(name) <= limit else name[:limit] + "..."


class ModelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An alias: ``provider`` and ``model`` for one deployment, or ``deployments`` for several."""

    provider: str | None = None
    model: str | None = None
    api: Literal["chat", "responses"] = "chat"
    deployments: list[Deployment] | None = None
    strategy: Strategy = "fallback"
    timeouts: Timeouts | None = None
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    mcp: list[str] = []  # MCP servers (under mcp_servers) whose tools this alias offers the model
    # Where a prompt that does not fit goes, in order: aliases or provider/model names with larger windows.
    context_fallbacks: list[Annotated[str, msgspec.Meta(min_length=1)]] = []
    # An answer whose upstream dies after text reached the client: continued by the next deployment, or not.
    midstream: Literal["rescue", "fail"] = "rescue"
    # No content from the first deployment this long: the next one is started beside it (off when unset).
    hedge_after_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None

    def __post_init__(self) -> None:
        single = self.provider is not None and self.model is not None
        if single == bool(self.deployments):
            raise ValueError("give either provider and model, or a non-empty list of deployments")

    def deployment_list(self) -> list[Deployment]:
        if self.deployments:
            return list(self.deployments)
        assert self.provider is not None
        assert self.model is not None
        return [Deployment(self.provider, self.model, self.api)]


class Plan(msgspec.Struct, frozen=True):
    """What serves one request's model: deployments in their order of preference, and its policy."""

    deployments: list[Deployment]
    strategy: Strategy = "fallback"
    timeouts: Timeouts | None = None
    retries: int | None = None
    mcp: tuple[str, ...] = ()  # MCP servers whose tools the model is offered
    context_fallbacks: tuple[str, ...] = ()  # model names for a prompt too long for these deployments
    midstream: Literal["rescue", "fail"] = "rescue"
    hedge_after_seconds: float | None = None


class ModelInfo(msgspec.Struct, frozen=True):
    id: str
    provider: str


class Router:
    """Resolves the ``model`` a client asked for to a plan of deployments on enabled providers.

    ``disabled`` names vendors the gateway knows but cannot use yet, with how to enable each, so that
    ``openai/gpt-5`` without a key says what to set instead of just "not found".
    """

    def __init__(
        self,
        providers: Iterable[Provider],
        aliases: Mapping[str, ModelConfig] | None = None,
        disabled: Mapping[str, str] | None = None,
    ):
        self.providers = {provider.name: provider for provider in providers}
        # (provider, api) for the APIs a provider has besides its own, picked once here, not per request.
        self.endpoints = {
            (name, api): variant
            for name, p in self.providers.items()
            for api, variant in getattr(p, "apis", {}).items()
        }
        self.aliases = dict(aliases or {})
        self.disabled = dict(disabled or {})
        self.builtins = {model: p.name for p in self.providers.values() for model in p.models}

    def resolve(self, name: str) -> Plan:
        alias = self.aliases.get(name)
        if alias is None:
            plan = Plan([self.deployment_for(name)])
        else:
            plan = Plan(
                alias.deployment_list(),
                alias.strategy,
                alias.timeouts,
                alias.retries,
                tuple(alias.mcp),
                tuple(alias.context_fallbacks),
                alias.midstream,
                alias.hedge_after_seconds,
            )
        usable = [d for d in plan.deployments if d.provider in self.providers]
        if not usable:
            missing = plan.deployments[0].provider
            raise ModelNotFoundError(
                f"The model {shorten(name)!r} is served by provider {missing!r}, which is not enabled: "
                f"{self.disabled.get(missing, 'configure it')}.",
                param="model",
            )
        return msgspec.structs.replace(plan, deployments=usable)

    def deployment_for(self, name: str) -> Deployment:
        base = name.partition(":")[0]
        if base in self.builtins:
            return Deployment(self.builtins[base], name)
        prefix, slash, model = name.partition("/")
        if slash and model and (prefix in self.providers or prefix in self.disabled):
            return Deployment(prefix, model)
        raise ModelNotFoundError(
            f"The model {shorten(name)!r} does not exist on this gateway. GET /v1/models lists the models it "
            "serves; a provider's model can also be named as 'provider/model'.",
            param="model",
        )

    def provider(self, deployment: Deployment) -> Provider:
        """The provider for the deployment's API: its own, or one of its others (OpenAI's Responses)."""
        return self.endpoints.get((deployment.provider, deployment.api)) or self.providers[deployment.provider]

    def same_dialect(self, deployment: Deployment, dialect: str) -> SameDialectProvider | None:
        """The deployment's provider when it speaks the client's ``dialect`` itself, else None."""
        provider = self.provider(deployment)
        return cast(SameDialectProvider, provider) if getattr(provider, "dialect", None) == dialect else None

    def list_models(self) -> list[ModelInfo]:
        models = []
        for name, alias in self.aliases.items():
            usable = [d for d in alias.deployment_list() if d.provider in self.providers]
            if usable:
                models.append(ModelInfo(name, usable[0].provider))
        models += [ModelInfo(name, provider) for name, provider in self.builtins.items()]
        return models

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
