"""Which providers exist: vendors enabled from the environment, named ones from the config file.

A vendor is enabled when its key is set (for Ollama, its URL); every base URL can be overridden.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import httpx
import msgspec

from providers._http import HttpProvider
from providers.anthropic import AnthropicProvider
from providers.base import Provider, Timeouts
from providers.gemini import GeminiProvider
from providers.ollama import OllamaProvider
from providers.openai import OpenAIProvider
from providers.openai_responses import OpenAIResponsesProvider

ProviderType = Literal["openai", "anthropic", "gemini", "ollama"]


class ProviderSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How to reach one upstream: its dialect, where it is, and the key the gateway uses there."""

    type: ProviderType
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = {}
    timeouts: Timeouts | None = None


# Vendor name: (type, variable with its key, variable with its base URL).
KEYED_VENDORS: dict[str, tuple[ProviderType, str, str]] = {
    "openai": ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "gemini": ("gemini", "GEMINI_API_KEY", "GEMINI_BASE_URL"),
}
HOW_TO_ENABLE = {
    **{name: f"set {key_var} in the gateway's environment" for name, (_, key_var, _) in KEYED_VENDORS.items()},
    "ollama": "set OLLAMA_BASE_URL (or OLLAMA_HOST) in the gateway's environment",
}
PROVIDER_CLASSES: dict[ProviderType, type[HttpProvider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "ollama": OllamaProvider,
}
# A vendor's other APIs, by the name a deployment's ``api`` gives them.
OTHER_APIS: dict[ProviderType, dict[str, type[HttpProvider]]] = {"openai": {"responses": OpenAIResponsesProvider}}


def env_specs(environ: Mapping[str, str]) -> dict[str, ProviderSpec]:
    specs = {
        name: ProviderSpec(kind, environ.get(url_var) or None, environ[key_var])
        for name, (kind, key_var, url_var) in KEYED_VENDORS.items()
        if environ.get(key_var)
    }
    ollama = ollama_url(environ)
    if ollama is not None:
        specs["ollama"] = ProviderSpec("ollama", ollama, environ.get("OLLAMA_API_KEY") or None)
    return specs


def ollama_url(environ: Mapping[str, str]) -> str | None:
    """OLLAMA_BASE_URL, else OLLAMA_HOST as Ollama's own clients read it (``0.0.0.0:11434``, ``host``, a URL)."""
    if environ.get("OLLAMA_BASE_URL"):
        return environ["OLLAMA_BASE_URL"]
    host = environ.get("OLLAMA_HOST", "").strip()
    if not host:
        return None
    scheme, sep, rest = host.partition("://")
    # A bare host means Ollama's port; an explicit scheme means that scheme's own default port.
    default_port = {"http": "80", "https": "443"}.get(scheme, "11434") if sep else "11434"
    if not sep:
        scheme, rest = "http", host
    address, slash, path = rest.partition("/")
    name, _, port = address.rpartition(":") if address.rfind(":") > address.rfind("]") else (address, "", "")
    name = "127.0.0.1" if name in ("", "0.0.0.0") else name
    return f"{scheme}://{name}:{port or default_port}{slash}{path}".rstrip("/")


def build_provider(name: str, spec: ProviderSpec, client: httpx.AsyncClient) -> Provider:
    """The provider, with its other APIs beside it (a deployment's ``api`` picks one), all on one client."""
    options: dict[str, Any] = {"base_url": spec.base_url, "api_key": spec.api_key or None, "headers": spec.headers}
    provider = PROVIDER_CLASSES[spec.type](name, client, **options)
    provider.apis = {api: kind(name, client, **options) for api, kind in OTHER_APIS.get(spec.type, {}).items()}
    return provider
