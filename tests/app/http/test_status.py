from __future__ import annotations

import httpx

from app import __version__
from app.config import GatewayConfig
from providers.router import ModelConfig
from tests.conftest import asgi_client, make_app


async def test_models_lists_builtins_in_openai_format(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert {"id": "echo", "object": "model", "created": 0, "owned_by": "simulated"} in body["data"]
    assert {m["id"] for m in body["data"]} == {"echo", "synthetic"}
    assert "simulated" in body["providers"]


async def test_models_includes_configured_aliases() -> None:
    config = GatewayConfig(models={"demo": ModelConfig("simulated", "synthetic:tokens=5")})
    async with asgi_client(make_app(config=config)) as client:
        ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
        answer = await client.post(
            "/v1/chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": "x"}]}
        )
    assert ids[0] == "demo"
    assert answer.json()["usage"]["completion_tokens"] == 5


async def test_health_says_version_and_providers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.json() == {"status": "ok", "version": __version__, "providers": ["simulated"]}
