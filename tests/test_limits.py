"""Limits, budgets and usage per gateway key through the HTTP API, in each client's dialect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from app.config import GatewayConfig
from app.http.auth import AuthSettings, GatewayKey
from app.limits.rules import Budgets, Price, RateLimits
from tests.conftest import asgi_client, make_app

HELLO = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}


def keys(**auth: Any) -> GatewayConfig:
    prices = {"echo": Price(input=1000, output=2000)}  # so that the echo's few tokens cost something
    listed = [
        GatewayKey("alice", "gw-alice", budgets=Budgets(tokens_per_day=200)),
        GatewayKey("bob", "gw-bob"),
        GatewayKey("ops", "gw-ops", admin=True),
    ]
    return GatewayConfig(auth=AuthSettings(keys=listed, **auth), prices=prices)


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app(config=keys(rate_limits=RateLimits(requests_per_minute=50)))) as client:
        yield client


def as_(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_budget_refuses_what_would_not_fit_then_says_when_it_resets(gateway: httpx.AsyncClient) -> None:
    # The echo answers with the prompt: about 45 tokens in and 40 out. Each call reserves its prompt's
    # estimate and its max_tokens (about 155), and settles to what it used: the second cannot fit.
    long = {**HELLO, "max_tokens": 100, "messages": [{"role": "user", "content": "word " * 40}]}
    statuses = [(await gateway.post("/v1/chat/completions", json=long, headers=as_("gw-alice"))) for _ in range(2)]
    assert [r.status_code for r in statuses] == [200, 429]
    refused = statuses[1]
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("budget_exceeded", "rate_limit_error")
    assert "tokens for today (UTC)" in error["message"]
    assert "T00:00:00Z" in error["message"]
    assert int(refused.headers["retry-after"]) > 0
    bob = await gateway.post("/v1/chat/completions", json=long, headers=as_("gw-bob"))
    assert bob.status_code == 200  # alice's budget is hers


async def test_usage_shows_the_callers_own_and_an_admin_sees_every_key(gateway: httpx.AsyncClient) -> None:
    chat = (await gateway.post("/v1/chat/completions", json=HELLO, headers=as_("gw-bob"))).json()["usage"]
    await gateway.post("/v1/embeddings", json={"model": "hash-embedding", "input": "abc"}, headers=as_("gw-bob"))
    mine = (await gateway.get("/api/v1/usage", headers=as_("gw-bob"))).json()
    assert mine["object"] == "list"
    assert mine["shared"] is False
    [bob] = mine["data"]
    assert bob["key"] == "bob"
    assert bob["rate_limits"]["requests_per_minute"] == 50
    today = bob["today"]
    assert today["requests"] == 2
    assert today["input_tokens"] > 0
    assert today["output_tokens"] > 0
    assert today["tokens"] == today["input_tokens"] + today["output_tokens"]
    # The echo has a price, the hashing embedding none: the cost is the chat's.
    assert today["cost"] == pytest.approx((chat["prompt_tokens"] * 1000 + chat["completion_tokens"] * 2000) / 10**6)
    assert bob["month"]["requests"] == 2
    assert bob["days"] == [{k: v for k, v in today.items() if k != "resets_at"}]
    everyone = (await gateway.get("/api/v1/usage", headers=as_("gw-ops"))).json()
    assert [entry["key"] for entry in everyone["data"]] == ["alice", "bob", "ops"]
    one = (await gateway.get("/api/v1/usage?key=bob", headers=as_("gw-ops"))).json()
    assert one["data"][0]["today"]["requests"] == 2


async def test_another_keys_usage_needs_an_admin_key(gateway: httpx.AsyncClient) -> None:
    forbidden = await gateway.get("/api/v1/usage?key=alice", headers=as_("gw-bob"))
    assert forbidden.status_code == 403
    assert "admin: true" in forbidden.json()["error"]["message"]
    missing = await gateway.get("/api/v1/usage?key=nobody", headers=as_("gw-ops"))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "key_not_found"


async def test_without_keys_usage_is_everyones_as_anonymous() -> None:
    async with asgi_client(make_app()) as client:
        await client.post("/v1/chat/completions", json=HELLO)
        [entry] = (await client.get("/api/v1/usage")).json()["data"]
    assert entry["key"] == "anonymous"
    assert entry["today"]["requests"] == 1


async def test_tokens_per_minute_refuse_in_the_openai_sdks_own_error() -> None:
    config = keys(rate_limits=RateLimits(tokens_per_minute=100))
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=make_app(config=config)), base_url="http://gw.test")
    client = openai.AsyncOpenAI(base_url="http://gw.test/v1", api_key="gw-bob", http_client=http, max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], max_tokens=500)
    assert info.value.code == "request_too_large"
    await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    await client.close()


async def test_a_budget_refusal_on_the_messages_api_is_anthropics_error() -> None:
    config = keys()
    app = make_app(config=config)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw.test")
    client = anthropic.AsyncAnthropic(base_url="http://gw.test", api_key="gw-alice", http_client=http, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(model="echo", max_tokens=500, messages=[{"role": "user", "content": "hi"}])
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "budget" in body["error"]["message"]
    await client.close()


async def test_routes_that_call_no_model_count_against_requests_per_minute() -> None:
    async with asgi_client(make_app(config=keys(rate_limits=RateLimits(requests_per_minute=2)))) as client:
        statuses = [(await client.get("/v1/models", headers=as_("gw-bob"))).status_code for _ in range(3)]
        chat = await client.post("/v1/chat/completions", json=HELLO, headers=as_("gw-bob"))
        usage = await client.get("/api/v1/usage", headers=as_("gw-bob"))
    assert statuses == [200, 200, 429]
    assert chat.status_code == 429  # one minute, whatever the route
    assert usage.status_code == 200  # except the usage, which says why


async def test_an_empty_key_name_is_a_400_that_says_so(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/usage?key=", headers=as_("gw-ops"))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "key"
