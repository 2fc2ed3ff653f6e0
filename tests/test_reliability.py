"""Reliability against real servers on 127.0.0.1: a fake vendor that misbehaves, the gateway in uvicorn.

Cancellation, timeouts, retries and fallbacks, keep-alives, honest endings and hostile upstreams.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
import pytest

from app.config import GatewayConfig, HttpSettings, Reliability
from app.main import create_app
from providers.balancer import Cooldown
from providers.base import (
    Deployment,
    Event,
    Finish,
    ReasoningDelta,
    Start,
    TextDelta,
    Timeouts,
    ToolCallStart,
    UpstreamUnavailableError,
    Usage,
)
from providers.catalog import ProviderSpec
from providers.router import ModelConfig
from tests.app.ops.test_metrics import sample
from tests.app.test_main import gateway_process
from tests.conftest import LiveServer, LiveServers, asgi_client, make_app
from tests.fake_vendor import FakeVendor
from tests.fakes import ScriptedProvider

CLOSE_WITHIN = 0.1  # the target: the upstream sees its connection closed within 100 ms of the client leaving
ids = itertools.count()


def scenario(name: str, **options: object) -> str:
    """A vendor model name, unique per use so that its connection's close time is its own."""
    options["id"] = next(ids)
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in options.items())


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


GatewayFactory = Callable[..., LiveServer]


@pytest.fixture(params=["aiohttp", "native"])
def gateway(vendor: FakeVendor, live_servers: LiveServers, request: pytest.FixtureRequest) -> GatewayFactory:
    """Starts a gateway in front of the fake vendor, with the reliability settings a test needs, over
    each transport beneath httpx: the default, and the gateway's own."""

    def start(models: dict[str, ModelConfig] | None = None, **reliability: Any) -> LiveServer:
        config = GatewayConfig(
            http=HttpSettings(transport=request.param),
            reliability=Reliability(**{"retries": 0, **reliability}),
            providers={
                "openai": ProviderSpec("openai", vendor.url, "sk-fake"),
                "backup": ProviderSpec("openai", vendor.url, "sk-fake"),
                "claude": ProviderSpec("anthropic", vendor.url.removesuffix("/v1"), "sk-fake"),  # Messages too
            },
            models=models or {},
        )
        return live_servers.start(create_app(config))

    return start


def body(model: str, stream: bool = True) -> dict[str, Any]:
    return {"model": f"openai/{model}", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield http


async def provider_serving(client: httpx.AsyncClient, url: str, alias: str) -> str:
    """Which provider answered one whole request for ``alias``."""
    response = await client.post(f"{url}/v1/chat/completions", json={**body("unused", stream=False), "model": alias})
    assert response.status_code == 200
    return str(response.headers["x-gateway-deployment"]).partition("/")[0]


def sse_events(raw: bytes) -> list[bytes]:
    return [frame for frame in raw.split(b"\n\n") if frame]


def access_line(capfd: pytest.CaptureFixture[str], model: str) -> dict[str, Any]:
    """The access-log line for ``model``; it is written just after the last byte, so it may lag the client."""
    output, deadline = "", time.monotonic() + 2
    while time.monotonic() < deadline:
        output += capfd.readouterr().out
        lines: list[dict[str, Any]] = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
        found = [entry for entry in lines if entry.get("event") == "request" and model in entry.get("model", "")]
        if found:
            [line] = found
            return line
        time.sleep(0.01)
    raise AssertionError(f"no access-log line for {model}")


class TestCancellation:
    async def test_while_connecting(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        model = scenario("ok", headers_ms=5000)
        left = await leave_after(client, gateway().url, body(model), seconds=0.3)
        assert vendor.closed_at(model) - left < CLOSE_WITHIN
        line = access_line(capfd, model)
        assert (line["status"], line["cancelled"], line["phase"]) == (499, True, "connecting")

    async def test_while_waiting_for_the_first_token(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        model = scenario("ok", ttft_ms=5000)
        async with client.stream("POST", f"{gateway().url}/v1/chat/completions", json=body(model)) as response:
            assert response.status_code == 200  # committed when the upstream answered; the role chunk waits
            left = time.monotonic()  # for the upstream's first event, which names the model answering
        assert vendor.closed_at(model) - left < CLOSE_WITHIN
        assert access_line(capfd, model)["phase"] == "waiting_first_token"

    async def test_mid_stream(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        model = scenario("ok", tokens=1000, delay_ms=20)
        received = b""
        async with client.stream("POST", f"{gateway().url}/v1/chat/completions", json=body(model)) as response:
            async for chunk in response.aiter_raw():
                received += chunk
                if received.count(b'"content":"tok') >= 3:
                    break
            left = time.monotonic()
        assert vendor.closed_at(model) - left < CLOSE_WITHIN
        line = access_line(capfd, model)
        assert line["phase"] == "streaming"
        assert line["delivered_chunks"] >= 4
        assert vendor.requests[model] == 1

    async def test_non_streaming(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        model = scenario("ok", ttft_ms=5000)
        left = await leave_after(client, gateway().url, body(model, stream=False), seconds=0.3)
        assert vendor.closed_at(model) - left < CLOSE_WITHIN
        assert access_line(capfd, model)["phase"] == "non_streaming"


async def leave_after(client: httpx.AsyncClient, url: str, payload: dict[str, Any], seconds: float) -> float:
    """Sends the request and abandons it after ``seconds``; returns when the client left."""
    request = asyncio.ensure_future(client.post(f"{url}/v1/chat/completions", json=payload))
    await asyncio.sleep(seconds)
    request.cancel()
    left = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await request
    return left


async def stream_all(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    async with client.stream("POST", f"{url}/v1/chat/completions", json=payload) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, raw


def error_of(raw: bytes) -> dict[str, Any]:
    """The error event a stream ended with; it must be the last event, with no [DONE]."""
    last = sse_events(raw)[-1]
    assert b"data: [DONE]" not in raw
    assert last.startswith(b'data: {"error":'), raw[-300:]
    payload: dict[str, dict[str, Any]] = orjson.loads(last[6:])
    return payload["error"]


class TestTimeouts:
    async def test_first_token_timeout_before_commit_is_a_504_naming_it(
        self, gateway: GatewayFactory, client: httpx.AsyncClient
    ) -> None:
        server = gateway(timeouts=Timeouts(first_token=0.3))
        response = await client.post(f"{server.url}/v1/chat/completions", json=body(scenario("ok", headers_ms=5000)))
        assert response.status_code == 504
        assert "timeouts.first_token" in response.json()["error"]["message"]
        assert "0.3 s" in response.json()["error"]["message"]

    async def test_keepalive_comments_from_the_upstream_do_not_count_as_tokens(
        self, gateway: GatewayFactory, client: httpx.AsyncClient
    ) -> None:
        server = gateway(timeouts=Timeouts(first_token=0.4))
        response, raw = await stream_all(client, server.url, body(scenario("keepalives")))
        assert response.status_code == 200  # the upstream answered, so the status was committed
        assert error_of(raw)["code"] == "upstream_timeout"

    async def test_idle_timeout_after_content_is_an_error_event(
        self, gateway: GatewayFactory, client: httpx.AsyncClient
    ) -> None:
        server = gateway(timeouts=Timeouts(idle=0.3))
        start = time.monotonic()
        _, raw = await stream_all(client, server.url, body(scenario("stall", tokens=2)))
        assert raw.count(b'"content":"tok') == 2
        error = error_of(raw)
        assert "timeouts.idle" in error["message"]
        assert time.monotonic() - start < 3

    async def test_total_timeout_ends_an_endless_stream(
        self, gateway: GatewayFactory, client: httpx.AsyncClient
    ) -> None:
        server = gateway(timeouts=Timeouts(total=0.5))
        _, raw = await stream_all(client, server.url, body(scenario("endless", delay_ms=10)))
        assert raw.count(b'"content":"tok') > 5
        assert "timeouts.total" in error_of(raw)["message"]


class TestRetriesAndFallbacks:
    async def test_5xx_is_retried_until_it_succeeds(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        model = scenario("status", code=503, times=2)
        response, raw = await stream_all(client, gateway(retries=2).url, body(model))
        assert response.status_code == 200
        assert raw.endswith(b"data: [DONE]\n\n")
        assert vendor.requests[model] == 3
        assert access_line(capfd, model)["retries"] == 2

    async def test_retry_after_is_honoured(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        model = scenario("status", code=429, times=1, retry_after="0.4")
        start = time.monotonic()
        response = await client.post(f"{gateway(retries=1).url}/v1/chat/completions", json=body(model, stream=False))
        assert response.status_code == 200
        assert time.monotonic() - start >= 0.4

    @pytest.mark.parametrize("code", [400, 401, 403, 404])
    async def test_client_and_auth_errors_are_never_retried(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, code: int
    ) -> None:
        model = scenario("status", code=code, times=5)
        response = await client.post(f"{gateway(retries=3).url}/v1/chat/completions", json=body(model))
        assert response.status_code in (400, 404, 502)
        assert vendor.requests[model] == 1

    async def test_nothing_is_retried_once_the_answer_began(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        model = scenario("reset", tokens=2)
        _, raw = await stream_all(client, gateway(retries=3).url, body(model))
        assert raw.count(b'"content":"tok') == 2
        assert error_of(raw)["code"] in ("upstream_error", "stream_truncated")
        assert vendor.requests[model] == 1

    async def test_a_failing_deployment_falls_back_to_the_next(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        bad, good = scenario("status", code=503, times=99), scenario("ok")
        alias = ModelConfig(deployments=[Deployment("openai", bad), Deployment("backup", good)])
        server = gateway({"smart": alias}, retries=1)
        response, raw = await stream_all(client, server.url, {**body(bad), "model": "smart"})
        assert response.headers["x-gateway-deployment"] == f"backup/{good}"
        assert raw.endswith(b"data: [DONE]\n\n")
        assert vendor.requests[bad] == 2
        line = access_line(capfd, "smart")
        assert (line["fallback"], line["deployment"]) == (True, f"backup/{good}")

    async def test_the_log_says_fallback_while_the_primary_cools_down(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        bad, good = scenario("status", code=503, times=99), scenario("ok")
        alias = ModelConfig(deployments=[Deployment("openai", bad), Deployment("backup", good)], retries=0)
        server = gateway({"cooling": alias}, cooldown=Cooldown(failures=1, seconds=60))
        for _ in range(2):  # the first fails over; the second skips the cooled primary altogether
            response = await client.post(
                f"{server.url}/v1/chat/completions", json={**body(good, stream=False), "model": "cooling"}
            )
            assert response.json()["model"] == "fake"  # the fake vendor's own name for what answered
        assert vendor.requests[bad] == 1
        output, deadline = "", time.monotonic() + 2
        while output.count('"model":"cooling"') < 2 and time.monotonic() < deadline:  # written after the body
            output += capfd.readouterr().out
            await asyncio.sleep(0.01)
        lines = [orjson.loads(line) for line in output.splitlines() if '"model":"cooling"' in line]
        assert [(line["fallback"], line["deployment"]) for line in lines] == [(True, f"backup/{good}")] * 2

    async def test_the_breaker_serves_from_the_fallback_probes_once_and_returns(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        flaky, good = scenario("status", code=503, times=2), scenario("ok")  # fails twice, then answers
        alias = ModelConfig(deployments=[Deployment("openai", flaky), Deployment("backup", good)], retries=0)
        server = gateway({"flaky": alias}, cooldown=Cooldown(failures=1, seconds=1.0))  # long beside two asks

        async def ask() -> str:
            return await provider_serving(client, server.url, "flaky")

        async def state() -> float:
            return sample((await client.get(f"{server.url}/metrics")).text, "gateway_circuit_state", model=flaky)

        served = [await ask(), await ask()]  # the first fails over and opens the circuit; the second skips it
        assert (served, vendor.requests[flaky], await state()) == (["backup", "backup"], 1, 2)
        await asyncio.sleep(1.1)
        assert await state() == 1  # half-open: the next request is the probe
        served = [await ask(), await ask()]  # the probe fails (its second 503): open again
        assert (served, vendor.requests[flaky]) == (["backup", "backup"], 2)
        await asyncio.sleep(1.1)
        served = [await ask(), await ask(), await ask()]  # the probe answers: closed, and back to it
        assert (served, vendor.requests[flaky], await state()) == (["openai"] * 3, 5, 0)

    async def test_a_deployment_whose_circuit_opens_is_not_retried_while_another_can_serve(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        down, good = scenario("status", code=503, times=99), scenario("ok")
        alias = ModelConfig(deployments=[Deployment("openai", down), Deployment("backup", good)], retries=2)
        server = gateway({"down": alias}, cooldown=Cooldown(failures=2, seconds=2.0))  # long beside two asks

        async def ask() -> str:
            return await provider_serving(client, server.url, "down")

        assert await ask() == "backup"
        assert vendor.requests[down] == 2  # its second failure opened the circuit: no third try
        assert await ask() == "backup"
        assert vendor.requests[down] == 2  # open: skipped
        await asyncio.sleep(2.1)
        assert await ask() == "backup"
        assert vendor.requests[down] == 3  # the probe failed once, and was not retried

    @pytest.mark.parametrize("style", ["openai", "anthropic", "vllm"])
    async def test_a_prompt_too_long_goes_to_the_context_fallback_and_is_never_retried_unchanged(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, style: str
    ) -> None:
        small, other, big = scenario("too_long", style=style), scenario("ok"), scenario("ok")
        aliases = {
            "small": ModelConfig(
                deployments=[Deployment("openai", small), Deployment("backup", other)], context_fallbacks=["big"]
            ),
            "big": ModelConfig("backup", big),
            "only": ModelConfig("openai", small),
        }
        server = gateway(aliases, retries=3)
        url = f"{server.url}/v1/chat/completions"
        response = await client.post(url, json={**body(big, stream=False), "model": "small"})
        assert response.status_code == 200
        assert response.headers["x-gateway-deployment"] == f"backup/{big}"
        assert (vendor.requests[small], vendor.requests[other], vendor.requests[big]) == (1, 0, 1)
        alone = await client.post(url, json={**body(big, stream=False), "model": "only"})
        assert alone.status_code == 400
        assert alone.json()["error"]["code"] == "context_length_exceeded"
        assert "context window" in alone.json()["error"]["message"]
        assert vendor.requests[small] == 2  # one more request, not retried

    async def test_round_robin_spreads_requests(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        first, second = scenario("ok"), scenario("ok")
        alias = ModelConfig(
            deployments=[Deployment("openai", first), Deployment("openai", second)], strategy="round_robin"
        )
        server = gateway({"spread": alias})
        for _ in range(4):
            await client.post(
                f"{server.url}/v1/chat/completions", json={**body(first, stream=False), "model": "spread"}
            )
        assert (vendor.requests[first], vendor.requests[second]) == (2, 2)


class TestSilentRoutes:
    """A silent upstream moves on at once; a fast failure keeps its retries with backoff."""

    SILENT: ClassVar[dict[str, tuple[str, dict[str, int]]]] = {  # no headers; headers then nothing; an early end
        "no_headers": ("ok", {"headers_ms": 5000}),
        "headers_then_nothing": ("stall", {"tokens": 0}),
        "dies_before_content": ("truncate", {"tokens": 0}),
    }

    @pytest.mark.parametrize("kind", SILENT)
    async def test_a_silent_deployment_is_left_at_once_for_the_fallback(
        self,
        gateway: GatewayFactory,
        vendor: FakeVendor,
        client: httpx.AsyncClient,
        capfd: pytest.CaptureFixture[str],
        kind: str,
    ) -> None:
        name, options = self.SILENT[kind]
        silent, good = scenario(name, **options), scenario("ok")
        alias = ModelConfig(deployments=[Deployment("openai", silent), Deployment("backup", good)], retries=3)
        server = gateway({"smart": alias}, timeouts=Timeouts(first_token=0.5))
        start = time.monotonic()
        _, raw = await stream_all(client, server.url, {**body(good), "model": "smart"})
        took = time.monotonic() - start
        line = access_line(capfd, "smart")  # the header went with the status, when the first one answered
        assert (line["deployment"], line["fallback"]) == (f"backup/{good}", True)
        assert raw.endswith(b"data: [DONE]\n\n")
        assert (vendor.wait_for_request(silent), vendor.requests[good]) == (1, 1)  # not retried while another is left
        assert took < 3  # one first-token timeout at most (0.5 s), not four

    @pytest.mark.parametrize("kind", SILENT)
    async def test_a_lone_silent_deployment_gets_one_more_try_and_no_more(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, kind: str
    ) -> None:
        name, options = self.SILENT[kind]
        silent = scenario(name, **options)
        server = gateway(retries=3, timeouts=Timeouts(first_token=0.5))
        response = await client.post(f"{server.url}/v1/chat/completions", json=body(silent, stream=False))
        assert response.status_code in (502, 504)
        assert vendor.wait_for_request(silent, count=2) == 2
        await asyncio.sleep(0.1)  # a third would have been sent before the answer; give it time to be seen
        assert vendor.requests[silent] == 2

    async def test_fast_failures_keep_their_retries(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        refused = scenario("status", code=503, times=99)
        response = await client.post(f"{gateway(retries=3).url}/v1/chat/completions", json=body(refused, stream=False))
        assert response.status_code == 503
        assert vendor.requests[refused] == 4

    async def test_a_429_without_a_hint_still_says_when_to_come_back(
        self, gateway: GatewayFactory, client: httpx.AsyncClient
    ) -> None:
        limited = scenario("status", code=429, times=99)  # as Ollama answers: no Retry-After
        response = await client.post(f"{gateway().url}/v1/chat/completions", json=body(limited, stream=False))
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1


class TestMidStreamRescue:
    """An upstream that dies after text reached the client: the next deployment continues the answer."""

    @staticmethod
    def text_of(raw: bytes) -> str:
        chunks = [orjson.loads(frame[6:]) for frame in sse_events(raw) if frame.startswith(b"data: {")]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))

    @pytest.mark.parametrize("broken", [("reset", {}), ("truncate", {}), ("stall", {})])
    async def test_the_fallback_continues_and_the_client_sees_one_answer(
        self,
        gateway: GatewayFactory,
        vendor: FakeVendor,
        client: httpx.AsyncClient,
        capfd: pytest.CaptureFixture[str],
        broken: tuple[str, dict[str, int]],
    ) -> None:
        first, rescuer = scenario(broken[0], tokens=2, **broken[1]), scenario("ok", tokens=3)
        alias = ModelConfig(deployments=[Deployment("openai", first), Deployment("backup", rescuer)])
        server = gateway({"kept": alias}, timeouts=Timeouts(idle=0.5))
        _, raw = await stream_all(
            client, server.url, {**body(first), "model": "kept", "stream_options": {"include_usage": True}}
        )
        assert self.text_of(raw) == "tok " * 2 + "tok " * 3  # exactly the partial, then the continuation
        assert raw.endswith(b"data: [DONE]\n\n")
        assert raw.count(b'"role":"assistant"') == 1
        usage = [
            orjson.loads(f[6:])["usage"] for f in sse_events(raw) if f.startswith(b'data: {"id"') and b'"usage"' in f
        ]
        assert usage[-1]["completion_tokens"] == 2 + 2  # the first attempt's two deltas, the rescuer's reported 2
        continuation = orjson.loads(vendor.bodies[rescuer][-1])["messages"]
        assert continuation[-2] == {"role": "assistant", "content": "tok tok "}  # no prefill on Chat Completions
        assert continuation[-1]["role"] == "user"
        assert "Continue it from exactly where it stopped" in continuation[-1]["content"]
        rescued = access_line(capfd, "kept")["rescued"]
        assert (rescued["from"], rescued["by"], rescued["deltas_before"]) == (f"openai/{first}", f"backup/{rescuer}", 2)

    async def test_an_anthropic_fallback_gets_a_prefill(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        first, rescuer = scenario("reset", tokens=2), scenario("ok", tokens=1)
        alias = ModelConfig(deployments=[Deployment("openai", first), Deployment("claude", rescuer)])
        _, raw = await stream_all(client, gateway({"kept": alias}).url, {**body(first), "model": "kept"})
        assert self.text_of(raw) == "tok tok " + "tok "
        continuation = orjson.loads(vendor.bodies[rescuer][-1])["messages"]
        # the answer so far, as the start of the assistant's turn, without the whitespace Anthropic refuses there
        assert continuation[-1] == {"role": "assistant", "content": [{"type": "text", "text": "tok tok"}]}

    @pytest.mark.parametrize("provider", ["backup", "claude"])  # refusing the instruction, or the prefill
    async def test_a_fallback_that_refuses_the_continuation_leaves_the_original_error(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, provider: str
    ) -> None:
        first, refusing = scenario("reset", tokens=2), scenario("status", code=400, times=99)
        alias = ModelConfig(deployments=[Deployment("openai", first), Deployment(provider, refusing)])
        _, raw = await stream_all(client, gateway({"kept": alias}).url, {**body(first), "model": "kept"})
        assert self.text_of(raw) == "tok tok "
        error = error_of(raw)
        assert "broke mid-answer" in error["message"]  # the reset, not the fallback's 400
        assert "fake failure 400" not in error["message"]
        assert vendor.requests[refusing] == 1
        asked = orjson.loads(vendor.bodies[refusing][-1])["messages"][-1]
        assert asked["role"] == ("assistant" if provider == "claude" else "user")  # a prefill for Anthropic

    async def test_midstream_fail_turns_it_off(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        first, unused = scenario("reset", tokens=2), scenario("ok")
        alias = ModelConfig(deployments=[Deployment("openai", first), Deployment("backup", unused)], midstream="fail")
        _, raw = await stream_all(client, gateway({"kept": alias}).url, {**body(first), "model": "kept"})
        assert error_of(raw)["message"]
        assert vendor.requests[unused] == 0


async def test_a_break_inside_a_tool_call_or_reasoning_is_not_rescued() -> None:
    broke = UpstreamUnavailableError("the upstream fell over")
    scripts: list[list[Event | Exception]] = [
        [Start(), TextDelta("Let me look."), ToolCallStart(0, "call_1", "search"), broke],
        [Start(), TextDelta("Thinking"), ReasoningDelta("hmm"), broke],
    ]
    for script in scripts:
        first, rescuer = (
            ScriptedProvider(script, name="first"),
            ScriptedProvider([Start(), TextDelta("x"), Finish("stop")], name="second"),
        )
        alias = ModelConfig(deployments=[Deployment("first", "fake"), Deployment("second", "fake")])
        app = make_app([first, rescuer], GatewayConfig(models={"m": alias}, reliability=Reliability(retries=0)))
        async with asgi_client(app) as http:
            raw = (await http.post("/v1/chat/completions", json={**body("x"), "model": "m"})).content
        assert error_of(raw)["message"]
        assert rescuer.requests == []


async def test_the_native_complete_event_says_it_was_rescued() -> None:
    first = ScriptedProvider([Start(), TextDelta("Hello"), UpstreamUnavailableError("gone")], name="first")
    rescuer = ScriptedProvider([Start(), TextDelta(" world"), Usage(9, 1), Finish("stop")], name="second")
    alias = ModelConfig(deployments=[Deployment("first", "fake"), Deployment("second", "fake")])
    app = make_app([first, rescuer], GatewayConfig(models={"m": alias}, reliability=Reliability(retries=0)))
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with asgi_client(app) as http:
        raw = (await http.post("/api/v1/chat", json=chat, headers={"accept": "text/event-stream"})).content
    lines = [frame.split(b"\n")[1:] for frame in sse_events(raw)]  # id:, then event: and data:
    events = [(name.removeprefix(b"event: "), data.removeprefix(b"data: ")) for name, data in lines]
    tokens = [orjson.loads(data)["content"] for name, data in events if name == b"token"]
    [complete] = [orjson.loads(data) for name, data in events if name == b"complete"]
    assert "".join(tokens) == "Hello world"
    assert (complete["rescued"]["from"], complete["rescued"]["by"]) == ("first/fake", "second/fake")
    assert complete["usage"]["completion_tokens"] == 1 + 1  # one delta before, the rescuer's reported one


class TestHedging:
    """A first deployment slow to its first content is raced by the next; the loser's connection closes."""

    @staticmethod
    async def first_content(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> tuple[float, bytes]:
        """When the first content reached the client, and the whole stream."""
        raw, seen = b"", 0.0
        async with client.stream("POST", f"{url}/v1/chat/completions", json=payload) as response:
            async for chunk in response.aiter_raw():
                raw += chunk
                if not seen and b'"content":"tok' in raw:
                    seen = time.monotonic()
        return seen, raw

    async def test_the_hedge_wins_when_the_first_is_slow_and_the_first_is_cancelled(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        slow, fast = scenario("ok", ttft_ms=5000), scenario("ok")
        alias = ModelConfig(
            deployments=[Deployment("openai", slow), Deployment("backup", fast)], hedge_after_seconds=0.2
        )
        start = time.monotonic()
        seen, raw = await self.first_content(client, gateway({"hedged": alias}).url, {**body(fast), "model": "hedged"})
        assert seen - start < 2  # not the 5 s the first would have taken
        assert raw.endswith(b"data: [DONE]\n\n")
        assert raw.count(b'"role":"assistant"') == 1
        assert vendor.closed_at(slow) - seen < CLOSE_WITHIN  # closed as the hedge won, before its content went on
        line = access_line(capfd, "hedged")
        assert line["hedged"]["winner"] == f"backup/{fast}"
        assert (line["deployment"], line["fallback"]) == (f"backup/{fast}", True)

    async def test_the_first_still_wins_when_it_answers_first(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        first, slower = scenario("ok", ttft_ms=400), scenario("ok", ttft_ms=5000)
        alias = ModelConfig(
            deployments=[Deployment("openai", first), Deployment("backup", slower)], hedge_after_seconds=0.1
        )
        seen, raw = await self.first_content(client, gateway({"hedged": alias}).url, {**body(first), "model": "hedged"})
        assert raw.endswith(b"data: [DONE]\n\n")
        assert vendor.requests[slower] == 1  # it was started beside the first
        assert vendor.closed_at(slower) - seen < CLOSE_WITHIN
        line = access_line(capfd, "hedged")
        assert (line["hedged"]["winner"], line["deployment"]) == (f"openai/{first}", f"openai/{first}")

    async def test_no_hedge_when_the_first_is_quick(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        quick, spare = scenario("ok"), scenario("ok")
        alias = ModelConfig(
            deployments=[Deployment("openai", quick), Deployment("backup", spare)], hedge_after_seconds=1
        )
        _, raw = await self.first_content(client, gateway({"hedged": alias}).url, {**body(quick), "model": "hedged"})
        assert raw.endswith(b"data: [DONE]\n\n")
        assert vendor.requests[spare] == 0

    async def test_a_hedge_that_fails_leaves_the_first_to_answer(
        self, gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
    ) -> None:
        slow, broken = scenario("ok", ttft_ms=500), scenario("status", code=503, times=99)
        alias = ModelConfig(
            deployments=[Deployment("openai", slow), Deployment("backup", broken)], hedge_after_seconds=0.1
        )
        _, raw = await self.first_content(client, gateway({"hedged": alias}).url, {**body(slow), "model": "hedged"})
        assert raw.endswith(b"data: [DONE]\n\n")
        assert raw.count(b'"content":"tok') == 3


class TestKeepAlive:
    async def test_comments_flow_while_the_model_thinks(
        self, gateway: GatewayFactory, client: httpx.AsyncClient
    ) -> None:
        server = gateway(keepalive_seconds=0.1)
        response, raw = await stream_all(client, server.url, body(scenario("ok", headers_ms=600)))
        assert response.status_code == 200
        before_answer = raw.split(b'"content":"tok')[0]
        assert before_answer.count(b": keep-alive\n\n") >= 3
        assert raw.endswith(b"data: [DONE]\n\n")

    async def test_after_commit_a_final_failure_is_an_error_event(
        self, gateway: GatewayFactory, client: httpx.AsyncClient
    ) -> None:
        server = gateway(keepalive_seconds=0.1, timeouts=Timeouts(first_token=0.5))
        response, raw = await stream_all(client, server.url, body(scenario("ok", headers_ms=5000)))
        assert response.status_code == 200
        assert raw.startswith(b": keep-alive")
        assert error_of(raw)["code"] == "upstream_timeout"


class TestHonestEndingsAndHostileUpstreams:
    @pytest.mark.parametrize("name", ["truncate", "reset"])
    async def test_a_stream_that_dies_ends_with_an_error_event(
        self, gateway: GatewayFactory, client: httpx.AsyncClient, name: str
    ) -> None:
        _, raw = await stream_all(client, gateway().url, body(scenario(name, tokens=2)))
        assert raw.count(b'"content":"tok') == 2
        assert error_of(raw)["type"] in ("upstream_error", "timeout_error")

    @pytest.mark.parametrize("stream", [True, False])
    async def test_a_finish_reason_then_a_clean_end_without_done_is_a_whole_answer(
        self, gateway: GatewayFactory, client: httpx.AsyncClient, stream: bool
    ) -> None:
        server = gateway()
        if stream:
            _, raw = await stream_all(client, server.url, body(scenario("no_done")))
            assert raw.count(b'"content":"tok') == 3
            assert raw.endswith(b"data: [DONE]\n\n")
            assert b'"finish_reason":"stop"' in raw
        else:
            response = await client.post(
                f"{server.url}/v1/chat/completions", json=body(scenario("no_done"), stream=False)
            )
            answer = response.json()
            assert (answer["choices"][0]["message"]["content"], answer["usage"]["completion_tokens"]) == ("tok " * 3, 2)

    @pytest.mark.parametrize(
        ("name", "status"), [("html", 502), ("wrong_type", 502), ("garbage", 502), ("huge_line", 502)]
    )
    async def test_hostile_bodies_are_a_clean_502(
        self, gateway: GatewayFactory, client: httpx.AsyncClient, name: str, status: int
    ) -> None:
        response = await client.post(f"{gateway().url}/v1/chat/completions", json=body(scenario(name), stream=False))
        assert response.status_code == status
        assert response.json()["error"]["message"]

    @pytest.mark.parametrize("stream", [True, False])
    async def test_a_200_that_is_not_an_answer_is_a_502_before_anything_is_sent(
        self, gateway: GatewayFactory, client: httpx.AsyncClient, stream: bool
    ) -> None:
        response = await client.post(f"{gateway().url}/v1/chat/completions", json=body(scenario("wrong_type"), stream))
        assert response.status_code == 502
        assert response.headers["content-type"] == "application/json"
        assert "a 200 with a text/html body" in response.json()["error"]["message"]


async def test_sigterm_lets_streams_finish_then_ends_the_rest_with_an_error(vendor: FakeVendor, tmp_path: Path) -> None:
    config = (
        "reliability: {shutdown_grace_seconds: 1.5}\n"
        f"providers: {{openai: {{type: openai, base_url: '{vendor.url}', api_key: sk-fake}}}}\n"
    )
    with gateway_process(tmp_path, config) as (url, process):
        async with httpx.AsyncClient(timeout=30) as client:
            started = [asyncio.Event(), asyncio.Event()]

            async def consume(model: str, ready: asyncio.Event) -> bytes:
                raw = b""
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body(model)) as response:
                    async for chunk in response.aiter_raw():
                        raw += chunk
                        if b'"content":"tok' in raw:
                            ready.set()
                return raw

            short = asyncio.ensure_future(consume(scenario("ok", tokens=40, delay_ms=20), started[0]))
            endless = asyncio.ensure_future(consume(scenario("endless", delay_ms=20), started[1]))
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 10)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            short_raw, endless_raw = await asyncio.wait_for(asyncio.gather(short, endless), 15)
            ended = time.monotonic() - signalled
            with pytest.raises(httpx.TransportError):
                await client.post(f"{url}/v1/chat/completions", json=body(scenario("ok")))
        assert short_raw.endswith(b"data: [DONE]\n\n")
        assert "shutting down" in error_of(endless_raw)["message"]
        assert 1.0 < ended < 5
        process.communicate(timeout=15)
        assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done


async def test_a_fallback_does_not_wait_for_the_failed_deployments_retry_after(
    gateway: GatewayFactory, vendor: FakeVendor, client: httpx.AsyncClient
) -> None:
    limited, good = scenario("status", code=429, times=99, retry_after="10"), scenario("ok")
    alias = ModelConfig(deployments=[Deployment("openai", limited), Deployment("backup", good)], retries=0)
    start = time.monotonic()
    response = await client.post(f"{gateway({'m': alias}).url}/v1/chat/completions", json={**body(good), "model": "m"})
    assert response.status_code == 200
    assert time.monotonic() - start < 2


async def test_retries_are_counted_by_provider_and_kind(gateway: GatewayFactory, client: httpx.AsyncClient) -> None:
    server = gateway(retries=2)
    model = scenario("status", code=503, times=2)
    labels = {"kind": "upstream_unavailable", "provider": "openai"}
    before = sample((await client.get(f"{server.url}/metrics")).text, "gateway_upstream_retries_total", **labels)
    await client.post(f"{server.url}/v1/chat/completions", json=body(model, stream=False))
    after = sample((await client.get(f"{server.url}/metrics")).text, "gateway_upstream_retries_total", **labels)
    assert after - before == 2
