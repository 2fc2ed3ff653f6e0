from __future__ import annotations

import re

import httpx
import pytest

from app.config import GatewayConfig
from app.http.auth import AuthSettings, GatewayKey
from tests.app.test_main import free_port, run_gateway, wait_until_up
from tests.conftest import asgi_client, make_app

CHAT = "/v1/chat/completions"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample, by metric name and a subset of its labels (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}{{(.*)}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def test_metrics_after_a_few_streams() -> None:
    async with asgi_client(make_app()) as client:
        before = (await client.get("/metrics")).text
        for model in ("echo", "synthetic:ttft_ms=0,delay_ms=0,tokens=4", "echo"):
            await client.post(
                CHAT, json={"model": model, "stream": True, "messages": [{"role": "user", "content": "a b"}]}
            )
        await client.post(CHAT, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
        await client.get("/no/such/route")
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text

    def grew(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert grew("gateway_requests_total", route=CHAT, provider="simulated", status="200") == 3
    assert grew("gateway_requests_total", route=CHAT, model="-", status="404") == 1  # unresolved model
    assert grew("gateway_requests_total", route="other", status="404") == 1  # unknown route
    assert grew("gateway_time_to_first_token_seconds_count", route=CHAT, provider="simulated") == 3
    assert grew("gateway_request_duration_seconds_bucket", route=CHAT, provider="simulated", le="+Inf") == 3
    assert grew("gateway_tokens_total", direction="out", provider="simulated") == 2 + 4 + 2
    assert sample(text, "gateway_active_streams") == 0


async def test_metrics_are_open_unless_protected() -> None:
    keys = [GatewayKey("ops", "k-metrics-0123")]
    async with asgi_client(make_app(config=GatewayConfig(auth=AuthSettings(keys=keys)))) as client:
        assert (await client.get("/metrics")).status_code == 200
    async with asgi_client(
        make_app(config=GatewayConfig(auth=AuthSettings(keys=keys, protect_metrics=True)))
    ) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"x-api-key": "k-metrics-0123"})).status_code == 200


def test_metrics_add_up_across_worker_processes(tmp_path: pytest.TempPathFactory) -> None:
    port = free_port()
    process = run_gateway(PORT=str(port), WORKERS="2")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", process)
        with httpx.Client(base_url=url) as client:
            for _ in range(8):
                client.post(CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
            scrapes = [client.get("/metrics").text for _ in range(4)]
    finally:
        process.terminate()
        process.communicate(timeout=15)
    # Whichever worker answers the scrape, it counts every worker's requests.
    assert {sample(s, "gateway_requests_total", route=CHAT, status="200") for s in scrapes} == {8.0}
