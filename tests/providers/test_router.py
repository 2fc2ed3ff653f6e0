from __future__ import annotations

import pytest

from providers.base import Deployment, ModelNotFoundError, Provider
from providers.router import ModelInfo, Router
from providers.simulated import SimulatedProvider
from tests.fakes import ScriptedProvider


@pytest.fixture
def router() -> Router:
    aliases = {
        "demo": Deployment("simulated", "synthetic:tokens=3"),
        "codex": Deployment("openai", "gpt-5-codex", "responses"),
        "fast": Deployment("groq", "llama"),
    }
    providers: list[Provider] = [SimulatedProvider(), ScriptedProvider([], name="groq", models=())]
    return Router(providers, aliases, {"openai": "set OPENAI_API_KEY in the gateway's environment"})


@pytest.mark.parametrize(
    ("name", "deployment"),
    [
        ("demo", Deployment("simulated", "synthetic:tokens=3")),
        ("echo", Deployment("simulated", "echo")),
        ("synthetic:ttft_ms=5", Deployment("simulated", "synthetic:ttft_ms=5")),
        ("simulated/echo", Deployment("simulated", "echo")),
        ("fast", Deployment("groq", "llama")),
        ("groq/llama-3.1-8b-instant", Deployment("groq", "llama-3.1-8b-instant")),
        ("groq/org/model:tag", Deployment("groq", "org/model:tag")),
    ],
)
def test_resolve(router: Router, name: str, deployment: Deployment) -> None:
    provider, resolved = router.resolve(name)
    assert resolved == deployment
    assert provider.name == deployment.provider


@pytest.mark.parametrize("name", ["gpt-5", "anthropic/claude", "simulated/", "echoes", "/echo"])
def test_unknown_model_points_to_the_model_list(router: Router, name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="GET /v1/models") as info:
        router.resolve(name)
    assert info.value.status == 404
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize("name", ["openai/gpt-5", "codex"])
def test_a_known_but_disabled_provider_says_how_to_enable_it(router: Router, name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="not enabled: set OPENAI_API_KEY"):
        router.resolve(name)


def test_list_models_has_usable_aliases_then_builtins(router: Router) -> None:
    assert router.list_models() == [
        ModelInfo("demo", "simulated"),
        ModelInfo("fast", "groq"),
        ModelInfo("echo", "simulated"),
        ModelInfo("synthetic", "simulated"),
    ]
