from __future__ import annotations

import pytest

from providers.base import ModelNotFoundError
from providers.router import Deployment, ModelInfo, Router
from providers.simulated import SimulatedProvider


@pytest.fixture
def router() -> Router:
    return Router([SimulatedProvider()], {"demo": Deployment("simulated", "synthetic:tokens=3")})


@pytest.mark.parametrize(
    ("name", "upstream"),
    [
        ("demo", "synthetic:tokens=3"),
        ("echo", "echo"),
        ("synthetic:ttft_ms=5", "synthetic:ttft_ms=5"),
        ("simulated/echo", "echo"),
    ],
)
def test_resolve(router: Router, name: str, upstream: str) -> None:
    provider, model = router.resolve(name)
    assert (provider.name, model) == ("simulated", upstream)


@pytest.mark.parametrize("name", ["gpt-5", "openai/gpt-5", "simulated/", "echoes", "/echo"])
def test_unknown_model_points_to_the_model_list(router: Router, name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="GET /v1/models") as info:
        router.resolve(name)
    assert info.value.status == 404
    assert info.value.code == "model_not_found"


def test_list_models_has_aliases_then_builtins(router: Router) -> None:
    assert router.list_models() == [
        ModelInfo("demo", "simulated"),
        ModelInfo("echo", "simulated"),
        ModelInfo("synthetic", "simulated"),
    ]
