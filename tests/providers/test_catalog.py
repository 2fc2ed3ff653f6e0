from __future__ import annotations

import httpx

from providers.anthropic import AnthropicProvider
from providers.base import Deployment
from providers.catalog import ProviderSpec, build_provider, env_specs
from providers.openai import OpenAIProvider
from providers.openai_responses import OpenAIResponsesProvider
from providers.router import Router


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


def test_a_deployment_s_api_picks_the_provider_for_it_once_built() -> None:
    client = httpx.AsyncClient()
    openai = build_provider("oa", ProviderSpec("openai", "https://api.test/v1", "sk-1"), client)
    anthropic = build_provider("an", ProviderSpec("anthropic", None, "sk-2"), client)
    router = Router([openai, anthropic])
    responses = router.provider(Deployment("oa", "gpt-5", "responses"))
    assert type(responses) is OpenAIResponsesProvider
    assert (responses.base_url, responses.headers) == (openai.base_url, openai.headers)  # type: ignore[attr-defined]
    assert router.provider(Deployment("oa", "gpt-5")) is openai
    assert router.provider(Deployment("an", "claude", "responses")) is anthropic  # no other API: its own
