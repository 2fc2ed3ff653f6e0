"""Model names to providers: configured aliases, built-in model names, and ``provider/model``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from providers.base import ModelNotFoundError, Provider


def shorten(name: str, limit: int = 100) -> str:
    """A client's model name as shown back in a message: long ones are cut, not echoed whole."""
    return name if len(name) <= limit else name[:limit] + "..."


class Deployment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One place a model is served: a provider and the model name it knows."""

    provider: str
    model: str


class ModelInfo(msgspec.Struct, frozen=True):
    id: str
    provider: str


class Router:
    """Resolves the ``model`` a client asked for to the provider and upstream model that serve it."""

    def __init__(self, providers: Iterable[Provider], aliases: Mapping[str, Deployment] | None = None):
        self.providers = {provider.name: provider for provider in providers}
        self.aliases = dict(aliases or {})
        self.builtins = {model: p.name for p in self.providers.values() for model in p.models}

    def resolve(self, name: str) -> tuple[Provider, str]:
        deployment = self.aliases.get(name)
        if deployment is not None:
            return self.providers[deployment.provider], deployment.model
        base = name.partition(":")[0]
        if base in self.builtins:
            return self.providers[self.builtins[base]], name
        prefix, slash, model = name.partition("/")
        if slash and model and prefix in self.providers:
            return self.providers[prefix], model
        raise ModelNotFoundError(
            f"The model {shorten(name)!r} does not exist on this gateway. GET /v1/models lists the models it "
            "serves; a provider's model can also be named as 'provider/model'.",
            param="model",
        )

    def list_models(self) -> list[ModelInfo]:
        models = [ModelInfo(name, d.provider) for name, d in self.aliases.items()]
        models += [ModelInfo(name, provider) for name, provider in self.builtins.items()]
        return models

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
