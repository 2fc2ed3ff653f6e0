"""Conversations through a real gateway (uvicorn on 127.0.0.1) in front of a real fake vendor, on both stores.

What the in-process tests cannot show: the vendor's own request bodies carrying the history, a client
that really leaves mid-stream, a vendor connection reset mid-answer, a restart of the gateway, and two
gateways (replicas) sharing one database.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from app.config import GatewayConfig, Reliability
from app.main import create_app
from providers.catalog import ProviderSpec
from tests.conftest import LiveServer, LiveServers
from tests.fake_vendor import FakeVendor

ids = itertools.count()
Start = Callable[[], LiveServer]


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


@pytest.fixture
def start_gateway(
    database_url: str, vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch, live_servers: LiveServers
) -> Start:
    """Starts gateways (with their lifespan: schema at start-up, store closed at shutdown) on one database."""
    monkeypatch.setenv("DATABASE_URL", database_url)

    def start() -> LiveServer:
        config = GatewayConfig(
            reliability=Reliability(retries=0), providers={"vendor": ProviderSpec("openai", vendor.url, "sk-fake")}
        )
        return live_servers.start(create_app(config))

    return start


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield http


def model(name: str, **options: object) -> str:
    """A vendor model unique to this use, so that its request bodies are its own."""
    options["id"] = next(ids)
    return f"vendor/{name}:" + ",".join(f"{k}={v}" for k, v in options.items())


def turn(conversation: str, vendor_model: str, text: str) -> dict[str, Any]:
    return {
        "model": vendor_model,
        "stream": True,
        "conversation_id": conversation,
        "messages": [{"role": "user", "content": text}],
    }


async def wait_for_messages(client: httpx.AsyncClient, url: str, count: int) -> list[dict[str, Any]]:
    """A cancelled turn is stored in the background: poll briefly for it."""
    deadline = time.monotonic() + 5
    while True:
        messages: list[dict[str, Any]] = (await client.get(url)).json()["messages"]
        if len(messages) >= count or time.monotonic() > deadline:
            return messages
        await asyncio.sleep(0.02)


async def test_three_turns_reach_the_vendor_whole_and_survive_a_restart(
    start_gateway: Start, vendor: FakeVendor, client: httpx.AsyncClient
) -> None:
    gateway = start_gateway()
    conversation = (await client.post(f"{gateway.url}/api/v1/conversations")).json()["id"]
    vendor_model = model("ok", tokens=2)
    for text in ("first", "second", "third"):
        response = await client.post(f"{gateway.url}/v1/chat/completions", json=turn(conversation, vendor_model, text))
        assert response.text.endswith("data: [DONE]\n\n")
    sent = [orjson.loads(body)["messages"] for body in vendor.bodies[vendor_model.removeprefix("vendor/")]]
    assert [len(messages) for messages in sent] == [1, 3, 5]
    assert sent[2] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "tok tok "},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "tok tok "},
        {"role": "user", "content": "third"},
    ]
    gateway.__exit__()

    restarted = start_gateway()
    stored = (await client.get(f"{restarted.url}/api/v1/conversations/{conversation}")).json()
    assert stored["message_count"] == 6
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", "first"),
        ("assistant", "tok tok "),
        ("user", "second"),
        ("assistant", "tok tok "),
        ("user", "third"),
        ("assistant", "tok tok "),
    ]
    assert all(m["model"] == vendor_model for m in stored["messages"] if m["role"] == "assistant")


async def test_a_client_that_leaves_mid_stream_keeps_what_it_saw(
    start_gateway: Start, client: httpx.AsyncClient
) -> None:
    gateway = start_gateway()
    conversation = (await client.post(f"{gateway.url}/api/v1/conversations")).json()["id"]
    payload = turn(conversation, model("ok", tokens=1000, delay_ms=20), "tell me everything")
    received = b""
    async with client.stream("POST", f"{gateway.url}/v1/chat/completions", json=payload) as response:
        async for chunk in response.aiter_raw():
            received += chunk
            if received.count(b'"content":"tok') >= 3:
                break
    user, answer = await wait_for_messages(client, f"{gateway.url}/api/v1/conversations/{conversation}", 2)
    assert user["content"] == "tell me everything"
    assert answer["incomplete"] is True
    assert answer["error"] == "cancelled"
    assert answer["content"].startswith("tok tok tok ")
    assert len(answer["content"]) < 4 * 1000  # what was seen, not the whole answer


async def test_a_vendor_reset_mid_answer_keeps_the_partial_answer(
    start_gateway: Start, client: httpx.AsyncClient
) -> None:
    gateway = start_gateway()
    conversation = (await client.post(f"{gateway.url}/api/v1/conversations")).json()["id"]
    response = await client.post(
        f"{gateway.url}/v1/chat/completions", json=turn(conversation, model("reset", tokens=3), "hi")
    )
    assert '"error"' in response.text
    stored = (await client.get(f"{gateway.url}/api/v1/conversations/{conversation}")).json()["messages"]
    assert [(m["role"], m["content"], m["incomplete"]) for m in stored] == [
        ("user", "hi", False),
        ("assistant", "tok tok tok ", True),
    ]
    assert stored[1]["error"] is not None


async def test_two_replicas_on_one_database_take_turns(
    start_gateway: Start, vendor: FakeVendor, client: httpx.AsyncClient
) -> None:
    first, second = start_gateway(), start_gateway()
    conversation = (await client.post(f"{first.url}/api/v1/conversations")).json()["id"]
    slow, quick = model("ok", tokens=10, delay_ms=30), model("ok", tokens=1)
    running = asyncio.ensure_future(
        client.post(f"{first.url}/v1/chat/completions", json=turn(conversation, slow, "slow one"))
    )
    await asyncio.sleep(0.1)  # the first replica's turn is streaming now
    answered = await client.post(f"{second.url}/v1/chat/completions", json=turn(conversation, quick, "quick one"))
    assert answered.status_code == 200
    assert (await running).text.endswith("data: [DONE]\n\n")
    # The second replica waited for the first's turn, and sent its answer upstream as history.
    sent = orjson.loads(vendor.bodies[quick.removeprefix("vendor/")][0])["messages"]
    assert [m["content"] for m in sent] == ["slow one", "tok " * 10, "quick one"]


async def test_a_second_turn_whose_client_leaves_while_waiting_never_runs(
    start_gateway: Start, vendor: FakeVendor, client: httpx.AsyncClient
) -> None:
    gateway = start_gateway()
    conversation = (await client.post(f"{gateway.url}/api/v1/conversations")).json()["id"]
    slow, waiting = model("ok", tokens=20, delay_ms=50), model("ok", tokens=1)
    first = asyncio.ensure_future(
        client.post(f"{gateway.url}/v1/chat/completions", json=turn(conversation, slow, "slow one"))
    )
    await asyncio.sleep(0.2)  # the first turn holds the conversation now
    second = asyncio.ensure_future(
        client.post(f"{gateway.url}/v1/chat/completions", json=turn(conversation, waiting, "never mind"))
    )
    await asyncio.sleep(0.3)  # the second turn waits behind the first
    second.cancel()  # its client leaves while it waits
    assert (await first).text.endswith("data: [DONE]\n\n")
    await asyncio.sleep(0.5)  # time for a turn that missed its client's leaving to run and be stored
    assert waiting.removeprefix("vendor/") not in vendor.bodies
    stored = (await client.get(f"{gateway.url}/api/v1/conversations/{conversation}")).json()["messages"]
    assert [m["content"] for m in stored] == ["slow one", "tok " * 20]
