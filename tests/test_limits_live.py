"""Limits and budgets hold across two workers sharing the machine's Redis: one key hammered at once.

``python -m app`` with ``WORKERS=2`` and ``REDIS_URL``; each test's keys live under their own prefix.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis

from tests.app.test_main import ROOT, free_port, wait_until_up

REDIS_URL = "redis://127.0.0.1:6379/0"
ECHOED = {"role": "user", "content": "word " * 40}  # the echo answers with it: 40 tokens out


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    name = f"test-live-{uuid.uuid4().hex}"
    yield name
    store = redis.Redis.from_url(REDIS_URL)
    keys = list(store.scan_iter(match=f"{name}:*"))
    if keys:
        store.delete(*keys)
    store.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, prefix: str) -> Iterator[str]:
    config = tmp_path_factory.mktemp("limits") / "gateway.yaml"
    config.write_text(
        f"limits: {{redis_prefix: {prefix}}}\n"
        "auth:\n"
        "  keys:\n"
        "    - {name: counted, key: gw-counted, rate_limits: {requests_per_minute: 30}}\n"
        "    - {name: budgeted, key: gw-budgeted, budgets: {tokens_per_day: 1000}}\n"
        "    - {name: ops, key: gw-ops, admin: true}\n"
    )
    port, log = free_port(), config.with_suffix(".log").open("wb")  # a file: a pipe left unread would fill
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        "REDIS_URL": REDIS_URL,
        "GATEWAY_CONFIG": str(config),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck shutdown is its own failure
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        yield http


async def hammer(client: httpx.AsyncClient, url: str, key: str, times: int, **body: object) -> list[httpx.Response]:
    payload = {"model": "echo", "messages": [ECHOED], **body}
    headers = {"authorization": f"Bearer {key}"}
    return await asyncio.gather(
        *(client.post(f"{url}/v1/chat/completions", json=payload, headers=headers) for _ in range(times))
    )


async def test_requests_per_minute_hold_exactly_across_workers(client: httpx.AsyncClient, gateway: str) -> None:
    responses = await hammer(client, gateway, "gw-counted", 80)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 30 + [429] * 50
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "30 requests per minute" in refused.json()["error"]["message"]


async def test_a_budget_is_never_overshot_by_calls_at_once(client: httpx.AsyncClient, gateway: str) -> None:
    # Each call reserves its prompt's estimate plus max_tokens and spends a little less: a budget of
    # 1000 tokens lets a few through at a time, and never more than fits.
    responses = await hammer(client, gateway, "gw-budgeted", 60, max_tokens=40)
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert served
    assert len(served) + len(refused) == 60
    assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
    spent = sum(r.json()["usage"]["total_tokens"] for r in served)
    usage = await client.get(f"{gateway}/api/v1/usage", headers={"authorization": "Bearer gw-ops"})
    [budgeted] = [entry for entry in usage.json()["data"] if entry["key"] == "budgeted"]
    assert usage.json()["shared"] is True
    assert budgeted["today"]["tokens"] == spent  # settled: what the upstream reported, nothing reserved
    assert budgeted["today"]["requests"] == len(served)
    assert spent <= 1000  # no overshoot at all: every call spent less than it reserved
