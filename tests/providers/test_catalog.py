from __future__ import annotations

import httpx

from providers.anthropic import AnthropicProvider
from providers.catalog import ProviderSpec, build_provider, env_specs
from providers.openai import OpenAIProvider


def test_a_vendor_is_enabled_by_its_key_and_its_base_url_can_be_overridden() -> None:
    specs = env_specs(
        {
            "OPENAI_API_KEY": "sk-1",
            "OPENAI_BASE_URL": "http://proxy/v1",
            "ANTHROPIC_API_KEY": "sk-ant",
            "GEMINI_API_KEY": "",
        }
    )
    assert specs == {
        "openai": ProviderSpec("openai", "http://proxy/v1", "sk-1"),
        "anthropic": ProviderSpec("anthropic", None, "sk-ant"),
    }


def test_ollama_is_enabled_by_its_url() -> None:
    assert env_specs({"OLLAMA_HOST": "0.0.0.0"}) == {"ollama": ProviderSpec("ollama", "http://127.0.0.1:11434")}
    assert env_specs({}) == {}


async def test_build_provider_uses_the_spec() -> None:
    async with httpx.AsyncClient() as client:
        groq = build_provider(
            "groq", ProviderSpec("openai", "https://api.groq.com/openai/v1", "gsk", {"x-team": "a"}), client
        )
        claude = build_provider("anthropic", ProviderSpec("anthropic"), client)
    assert isinstance(groq, OpenAIProvider)
    assert (groq.name, groq.base_url, groq.headers["x-team"]) == ("groq", "https://api.groq.com/openai/v1", "a")
    assert groq.headers["authorization"] == "Bearer gsk"
    assert isinstance(claude, AnthropicProvider)
    assert claude.base_url == "https://api.anthropic.com"
    assert "x-api-key" not in claude.headers
