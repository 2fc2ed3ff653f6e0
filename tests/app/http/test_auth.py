from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from app.config import CorsSettings, GatewayConfig
from app.http.auth import AuthSettings, GatewayKey, keys_from_env
from app.limits.rules import RateLimits
from tests.conftest import asgi_client, make_app

KEY = "gw-test-key-0123456789"
HELLO = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def keyed(**auth: Any) -> GatewayConfig:
    return GatewayConfig(auth=AuthSettings(keys=[GatewayKey("alice", KEY)], **auth))


async def call(config: GatewayConfig, headers: dict[str, str], path: str = "/v1/chat/completions") -> httpx.Response:
    async with asgi_client(make_app(config=config)) as client:
        if path.startswith("/v1/chat"):
            return await client.post(path, json=HELLO, headers=headers)
        return await client.get(path, headers=headers)


@pytest.mark.parametrize(
    "headers", [{"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}, {"authorization": f"bearer  {KEY} "}]
)
async def test_a_configured_key_is_accepted_either_way(headers: dict[str, str]) -> None:
    assert (await call(keyed(), headers)).status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"authorization": "Bearer nope-wrong-key"}, "invalid_api_key"),
        ({"x-api-key": KEY[:-1]}, "invalid_api_key"),
    ],
)
async def test_without_the_key_a_401_says_how_to_authenticate(headers: dict[str, str], code: str) -> None:
    response = await call(keyed(), headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, "authentication_error")
    assert "Authorization: Bearer <key>" in error["message"]
    assert "nope-wrong-key" not in response.text
    assert error["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/health", "/openapi.yaml"])
async def test_health_and_the_contract_stay_open(path: str) -> None:
    assert (await call(keyed(), {}, path)).status_code == 200


async def test_without_keys_configured_the_api_is_open() -> None:
    assert (await call(GatewayConfig(), {})).status_code == 200


async def test_the_key_name_shows_in_the_access_log(capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    await call(keyed(), {"x-api-key": KEY})
    lines = [orjson.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    [line] = [entry for entry in lines if entry.get("event") == "request"]
    assert line["key"] == "alice"
    assert KEY not in str(lines)


def test_keys_from_the_environment() -> None:
    assert keys_from_env("k1, ops=k2,,") == [GatewayKey("key-1", "k1"), GatewayKey("ops", "k2")]


async def test_requests_per_minute_over_the_limit_is_a_429_with_retry_after() -> None:
    config = keyed(rate_limits=RateLimits(requests_per_minute=2))
    async with asgi_client(make_app(config=config)) as client:
        statuses = [
            (await client.post("/v1/chat/completions", json=HELLO, headers={"x-api-key": KEY})) for _ in range(3)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert 55 <= int(statuses[2].headers["retry-after"]) <= 60
    assert statuses[2].json()["error"]["code"] == "rate_limit_exceeded"


async def test_cors_is_off_by_default_and_follows_the_allow_list() -> None:
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    async with asgi_client(make_app()) as client:
        off = await client.options("/v1/chat/completions", headers=preflight)
    config = GatewayConfig(cors=CorsSettings(allow_origins=["https://app.example"]))
    async with asgi_client(make_app(config=config)) as client:
        allowed = await client.options("/v1/chat/completions", headers=preflight)
        denied = await client.options("/v1/chat/completions", headers={**preflight, "origin": "https://evil.example"})
        answer = await client.post("/v1/chat/completions", json=HELLO, headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in off.headers
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in denied.headers
    assert "x-request-id" in answer.headers["access-control-expose-headers"]


@pytest.mark.parametrize("log_content", ["true", ""])
async def test_message_content_is_logged_only_with_log_content(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], log_content: str
) -> None:
    monkeypatch.setenv("LOG_CONTENT", log_content)
    capfd.readouterr()
    await call(GatewayConfig(), {})
    out = capfd.readouterr().out
    assert ('"content":"hi"' in out) is bool(log_content)
