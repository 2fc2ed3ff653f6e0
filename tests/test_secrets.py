"""No secret reaches a log line or a response: known fake keys through success and every error path."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.config import GatewayConfig, Reliability
from app.http.auth import AuthSettings, GatewayKey
from app.limits.rules import RateLimits
from app.main import create_app
from providers.base import Timeouts
from providers.catalog import ProviderSpec
from tests.conftest import LiveServer
from tests.fake_vendor import FakeVendor
from tests.test_reliability import scenario

PROVIDER_KEY = "sk-provider-SECRET-7f3a9c"
GATEWAY_KEY = "gw-SECRET-key-51d2e8"
SECRETS = (PROVIDER_KEY, GATEWAY_KEY, "SECRET")


async def test_no_key_appears_in_any_log_line_or_response(capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    with FakeVendor() as vendor:
        config = GatewayConfig(
            reliability=Reliability(retries=0, timeouts=Timeouts(first_token=0.3)),
            auth=AuthSettings(keys=[GatewayKey("tester", GATEWAY_KEY)], rate_limits=RateLimits(requests_per_minute=9)),
            providers={"openai": ProviderSpec("openai", vendor.url, PROVIDER_KEY)},
        )
        with LiveServer(create_app(config)) as server:
            good = {"authorization": f"Bearer {GATEWAY_KEY}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                async def chat(model: str, headers: dict[str, str], stream: bool = True) -> None:
                    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                    response = await client.post("/v1/chat/completions", json=body, headers=headers)
                    seen.append(str(response.headers) + response.text)

                await chat("echo", good)  # success
                await chat("echo", good, stream=False)
                await chat("echo", {})  # no key
                await chat("echo", {"authorization": f"Bearer {GATEWAY_KEY}x"})  # a near miss
                await chat("echo", {"x-api-key": PROVIDER_KEY})  # a provider key is not a gateway key
                await chat(f"openai/{scenario('echo_auth')}", good)  # the vendor repeats our provider key
                await chat(f"openai/{scenario('status', code=500)}", good)
                await chat(f"openai/{scenario('ok', headers_ms=2000)}", good)  # timeout
                await chat(f"openai/{scenario('reset', tokens=2)}", good)
                await chat("nope", good)
                socket_url = server.url.replace("http", "ws") + "/ws/chat"
                async with connect(socket_url, additional_headers=good) as ws:
                    await ws.send(
                        '{"type":"chat","request_id":"r","model":"echo","messages":[{"role":"user","content":"hi"}]}'
                    )
                    seen.append(str(await asyncio.wait_for(ws.recv(), 5)))
                with pytest.raises(InvalidStatus):
                    async with connect(socket_url):
                        pass
                for _ in range(3):
                    await chat("echo", good)  # the last ones are over the rate limit
            assert any("rate_limit_exceeded" in s for s in seen)
            assert any("upstream_auth_error" in s for s in seen)
        structlog.get_logger("test").error(
            "failure", detail=f"upstream said {PROVIDER_KEY}", nested={"key": GATEWAY_KEY}
        )
        try:
            raise RuntimeError(f"a bug holding {PROVIDER_KEY}")
        except RuntimeError:
            structlog.get_logger("test").exception("bug")
    output = capfd.readouterr()
    logs = output.out + output.err
    assert '"event":"request"' in logs
    assert "[redacted]" in logs
    for secret in SECRETS:
        assert secret not in logs, secret
        for response in seen:
            assert secret not in response, (secret, response[:300])
