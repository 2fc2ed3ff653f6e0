"""``GET /health/ready``: ready, draining after SIGTERM, or a required store down; ``/health`` stays liveness."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from app.config import ConversationSettings, GatewayConfig, Limits
from tests.app.test_main import gateway_process
from tests.conftest import asgi_client, make_app

NOWHERE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
NOWHERE_POSTGRES = "postgresql://gateway:gateway@127.0.0.1:1/gateway"


async def readiness(config: GatewayConfig) -> httpx.Response:
    async with asgi_client(make_app(config=config)) as client:
        return await client.get("/health/ready")


async def test_ready_with_its_stores_up() -> None:
    response = await readiness(GatewayConfig())
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "stores": {"conversations": {"status": "up", "required": False}}}


@pytest.mark.parametrize(("on_down", "status"), [("closed", 503), ("open", 200)])
async def test_a_limits_store_that_is_down_makes_it_unready_only_when_it_fails_closed(
    on_down: str, status: int
) -> None:
    limits = Limits(redis_url=NOWHERE_REDIS, on_redis_down="closed" if on_down == "closed" else "open")
    response = await readiness(GatewayConfig(limits=limits))
    assert response.status_code == status
    assert response.json()["stores"]["limits"] == {"status": "down", "required": on_down == "closed"}
    assert response.json()["status"] == ("unavailable" if status == 503 else "ready")


@pytest.mark.parametrize("required", [True, False])
async def test_a_conversation_database_that_is_down_counts_when_required(
    required: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL")  # the tests' SQLite would win over the config's
    settings = ConversationSettings(database_url=NOWHERE_POSTGRES, required=required)
    response = await readiness(GatewayConfig(conversations=settings))
    assert response.status_code == (503 if required else 200)
    assert response.json()["stores"]["conversations"] == {"status": "down", "required": required}


async def test_sigterm_drains_then_stops_accepting_while_streams_finish(tmp_path: Path) -> None:
    config = "reliability: {drain_seconds: 1.5, shutdown_grace_seconds: 10}\n"
    with gateway_process(tmp_path, config) as (url, process):
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(f"{url}/health/ready")).status_code == 200
            messages = [{"role": "user", "content": "x"}]
            body = {"model": "synthetic:delay_ms=50,tokens=80", "stream": True, "messages": messages}
            first_token = asyncio.Event()

            async def consume() -> bytes:
                raw = b""
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                    async for chunk in response.aiter_raw():
                        raw += chunk
                        first_token.set()
                return raw

            streaming = asyncio.ensure_future(consume())
            await asyncio.wait_for(first_token.wait(), 10)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            draining = await client.get(f"{url}/health/ready")
            assert draining.status_code == 503
            assert draining.json()["status"] == "draining"
            assert (await client.get(f"{url}/health")).status_code == 200  # still alive
            during = await client.post(f"{url}/v1/chat/completions", json={"model": "echo", "messages": messages})
            assert during.status_code == 200  # while draining, what still comes is served
            await asyncio.sleep(1.6)
            async with httpx.AsyncClient(timeout=5) as fresh:  # a new connection: refused once it stopped accepting
                with pytest.raises(httpx.ConnectError):
                    await fresh.get(f"{url}/health")
            raw = await asyncio.wait_for(streaming, 15)
        assert raw.endswith(b"data: [DONE]\n\n")  # the stream in flight finished
        process.communicate(timeout=15)
        assert process.returncode in (0, -signal.SIGTERM)
