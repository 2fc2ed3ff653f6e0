"""Model names to deployments: configured aliases, built-in model names, and ``provider/model``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from providers.base import Deployment, ModelNotFoundError, Provider


def shorten(name: str, limit: int = 100) -> str:
    """A client's model name as shown back in a message: long ones are cut, not echoed whole."""
    return name if len(name) <= limit else name[:limit] + "..."


class ModelInfo(msgspec.Struct, frozen=True):
    id: str
    provider: str


class Router:
    """Resolves the ``model`` a client asked for to the provider and deployment that serve it.

    ``disabled`` names vendors the gateway knows but cannot use yet, with how to enable each, so that
    ``openai/gpt-5`` without a key says what to set instead of just "not found".
    """

    def __init__(
        self,
        providers: Iterable[Provider],
        aliases: Mapping[str, Deployment] | None = None,
        disabled: Mapping[str, str] | None = None,
    ):
        self.providers = {provider.name: provider for provider in providers}
        self.aliases = dict(aliases or {})
        self.disabled = dict(disabled or {})
        self.builtins = {model: p.name for p in self.providers.values() for model in p.models}

    def resolve(self, name: str) -> tuple[Provider, Deployment]:
        deployment = self.aliases.get(name)
        if deployment is None:
            deployment = self.deployment_for(name)
        provider = self.providers.get(deployment.provider)
        if provider is None:
            raise ModelNotFoundError(
                f"The model {shorten(name)!r} is served by provider {deployment.provider!r}, which is not enabled: "
                f"{self.disabled.get(deployment.provider, 'configure it')}.",
                param="model",
            )
        return provider, deployment

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

    def list_models(self) -> list[ModelInfo]:
        models = [ModelInfo(name, d.provider) for name, d in self.aliases.items() if d.provider in self.providers]
        models += [ModelInfo(name, provider) for name, provider in self.builtins.items()]
        return models

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
