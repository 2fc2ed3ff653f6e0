from __future__ import annotations

import httpx
import pytest

from app import __version__
from app.config import GatewayConfig
from providers.router import ModelConfig
from tests.conftest import asgi_client, make_app


async def test_models_lists_builtins_in_openai_format(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert {"id": "echo", "object": "model", "created": 0, "owned_by": "simulated"} in body["data"]
    assert {m["id"] for m in body["data"]} == {"echo", "synthetic", "hash-embedding"}
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
    assert response.json() == {"status": "ok", "version": __version__, "providers": ["hashing", "simulated"]}


async def test_anthropic_s_clients_get_anthropic_s_model_list(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})).json()
    ids = [model["id"] for model in body["data"]]
    assert "echo" in ids
    assert body["data"][0] == {
        "type": "model",
        "id": ids[0],
        "display_name": ids[0],
        "created_at": "1970-01-01T00:00:00Z",
    }
    assert (body["has_more"], body["first_id"], body["last_id"]) == (False, ids[0], ids[-1])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {"id": "echo", "object": "model", "created": 0, "owned_by": "simulated"}),
        (
            {"anthropic-version": "2023-06-01"},
            {"type": "model", "id": "echo", "display_name": "echo", "created_at": "1970-01-01T00:00:00Z"},
        ),
    ],
)
async def test_one_model_in_the_client_s_format(
    client: httpx.AsyncClient, headers: dict[str, str], expected: dict[str, object]
) -> None:
    assert (await client.get("/v1/models/echo", headers=headers)).json() == expected


async def test_an_unknown_model_is_a_404_in_the_client_s_envelope(client: httpx.AsyncClient) -> None:
    openai_shaped = await client.get("/v1/models/nope")
    anthropic_shaped = await client.get("/v1/models/nope", headers={"anthropic-version": "2023-06-01"})
    assert (openai_shaped.status_code, openai_shaped.json()["error"]["code"]) == (404, "model_not_found")
    assert anthropic_shaped.status_code == 404
    assert anthropic_shaped.json()["error"]["type"] == "not_found_error"
    assert anthropic_shaped.headers["request-id"] == anthropic_shaped.json()["request_id"]
