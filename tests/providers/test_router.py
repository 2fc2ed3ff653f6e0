from __future__ import annotations

import pytest

from providers.base import Deployment, ModelNotFoundError, Provider, Timeouts
from providers.router import ModelConfig, ModelInfo, Router
from providers.simulated import SimulatedProvider
from tests.fakes import ScriptedProvider


@pytest.fixture
def router() -> Router:
    aliases = {
        "demo": ModelConfig("simulated", "synthetic:tokens=3"),
        "codex": ModelConfig("openai", "gpt-5-codex", "responses"),
        "fast": ModelConfig("groq", "llama"),
        "smart": ModelConfig(
            deployments=[Deployment("openai", "gpt-5"), Deployment("groq", "big"), Deployment("simulated", "echo")],
            strategy="round_robin",
            timeouts=Timeouts(first_token=9),
            retries=1,
        ),
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
    plan = router.resolve(name)
    assert plan.deployments == [deployment]
    assert router.provider(deployment).name == deployment.provider


def test_an_alias_with_several_deployments_keeps_the_enabled_ones_and_its_policy(router: Router) -> None:
    plan = router.resolve("smart")
    assert plan.deployments == [Deployment("groq", "big"), Deployment("simulated", "echo")]
    assert (plan.strategy, plan.timeouts, plan.retries) == ("round_robin", Timeouts(first_token=9), 1)


def test_an_alias_needs_provider_and_model_or_deployments() -> None:
    with pytest.raises(ValueError, match="either provider and model"):
        ModelConfig(provider="openai")


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
        ModelInfo("smart", "groq"),
        ModelInfo("echo", "simulated"),
        ModelInfo("synthetic", "simulated"),
    ]
