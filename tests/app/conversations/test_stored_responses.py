"""Stored Responses-API answers, on SQLite and PostgreSQL, through the official openai SDK:
``previous_response_id`` chains on any upstream, ``responses.retrieve`` and ``delete``, ``store: false``,
keys that cannot see each other's responses, and ids only OpenAI can hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import openai
import orjson
import pytest
import respx
from openai.types.responses import Response
from starlette.applications import Starlette

from app.config import GatewayConfig
from app.conversations.turns import Conversations
from app.http.auth import AuthSettings, GatewayKey
from providers import make_client
from providers.base import Deployment
from providers.catalog import ProviderSpec, build_provider
from providers.router import ModelConfig
from tests.app.conversations.helpers import RecordingProvider, gateway_app
from tests.conftest import LiveServers, make_app
from tests.providers.streams import fixture, streamed

ALICE, BOB = "k-alice-0123456789", "k-bob-0123456789"
KEYS = AuthSettings(keys=[GatewayKey("alice", ALICE), GatewayKey("bob", BOB)])
OPENAI = "https://openai.test/v1"


@asynccontextmanager
async def sdk(app: Starlette, key: str = ALICE) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway.test")
    conversations: Conversations = app.state.conversations
    try:
        async with (
            http,
            openai.AsyncOpenAI(base_url="http://gateway.test/v1", api_key=key, http_client=http, max_retries=0) as c,
        ):
            yield c
    finally:
        await conversations.close()


def plain(response: Any) -> Any:
    """A response as JSON, without the ``parsed`` the SDK's stream helper adds to text parts."""

    def drop(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if k != "parsed"}
        return [drop(v) for v in value] if isinstance(value, list) else value

    return drop(response.model_dump(mode="json"))


def rows(app: Starlette) -> Any:
    conversations: Conversations = app.state.conversations
    return conversations.store.db.fetch("SELECT id, owner, previous_id FROM responses ORDER BY created_us")


@pytest.mark.parametrize("stream", [False, True])
async def test_two_turns_chained_by_previous_response_id_reach_any_upstream_with_the_history(
    database_url: str, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    provider = RecordingProvider()
    app = gateway_app(database_url, monkeypatch, provider, auth=KEYS)
    async with sdk(app) as client:
        first: Response
        if stream:
            async with client.responses.stream(model="rec/m", input="first", instructions="be brief") as events:
                first = await events.get_final_response()
        else:
            first = await client.responses.create(model="rec/m", input="first", instructions="be brief")
        second = await client.responses.create(
            model="rec/m",
            previous_response_id=first.id,
            input=[{"role": "user", "content": "second"}],
            instructions="be kind",
        )
        third = await client.responses.create(model="rec/m", previous_response_id=second.id, input="third")
        assert (first.output_text, second.output_text, third.output_text) == ("answer 1", "answer 2", "answer 3")
        # Instructions are not carried on; the input and answers of every earlier response are.
        assert provider.sent(1) == [
            ("system", "be kind"),
            ("user", "first"),
            ("assistant", "answer 1"),
            ("user", "second"),
        ]
        assert provider.sent(2) == [
            ("user", "first"),
            ("assistant", "answer 1"),
            ("user", "second"),
            ("assistant", "answer 2"),
            ("user", "third"),
        ]
        kept = await rows(app)
    assert [tuple(row) for row in kept] == [
        (first.id, "alice", None),
        (second.id, "alice", first.id),
        (third.id, "alice", second.id),
    ]


async def test_retrieve_gives_the_response_as_the_client_saw_it_and_delete_forgets_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(database_url, monkeypatch, RecordingProvider(), auth=KEYS)
    async with sdk(app) as client:
        async with client.responses.stream(model="rec/m", input="hello", metadata={"k": "v"}) as events:
            (streamed_answer,) = [e.response async for e in events if e.type == "response.completed"]
        retrieved = await client.responses.retrieve(streamed_answer.id)
        assert plain(retrieved) == plain(streamed_answer)
        assert (retrieved.status, retrieved.output_text, retrieved.metadata) == ("completed", "answer 1", {"k": "v"})
        assert retrieved.usage is not None
        assert retrieved.usage.input_tokens == 7

        await client.responses.delete(streamed_answer.id)
        with pytest.raises(openai.NotFoundError, match="not found for this key"):
            await client.responses.retrieve(streamed_answer.id)
        with pytest.raises(openai.NotFoundError) as deleted_twice:
            await client.responses.delete(streamed_answer.id)
        assert deleted_twice.value.code == "response_not_found"
        with pytest.raises(openai.NotFoundError) as gone:
            await client.responses.create(model="rec/m", input="more", previous_response_id=streamed_answer.id)
        assert (gone.value.code, gone.value.param) == ("previous_response_not_found", "previous_response_id")


async def test_another_keys_response_does_not_exist_for_it(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = RecordingProvider()
    app = gateway_app(database_url, monkeypatch, provider, auth=KEYS)
    async with sdk(app, ALICE) as alice:
        mine = await alice.responses.create(model="rec/m", input="secret plan")
        async with sdk(app, BOB) as bob:
            with pytest.raises(openai.NotFoundError):
                await bob.responses.retrieve(mine.id)
            with pytest.raises(openai.NotFoundError):
                await bob.responses.delete(mine.id)
            with pytest.raises(openai.NotFoundError, match="Previous response"):
                await bob.responses.create(model="rec/m", input="tell me", previous_response_id=mine.id)
        assert (await alice.responses.retrieve(mine.id)).output_text == "answer 1"
    assert len(provider.requests) == 1  # bob's continuation never reached the model


async def test_store_false_keeps_nothing(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = gateway_app(database_url, monkeypatch, RecordingProvider(), auth=KEYS)
    async with sdk(app) as client:
        async with client.responses.stream(model="rec/m", input="private", store=False) as events:
            answer = await events.get_final_response()
        whole = await client.responses.create(model="rec/m", input="private", store=False)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(answer.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(whole.id)
        assert await rows(app) == []


async def test_a_failed_stream_is_kept_as_failed_with_what_the_client_saw(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(database_url, monkeypatch, RecordingProvider(fail_after=1), auth=KEYS)
    async with sdk(app) as client:
        async with client.responses.stream(model="rec/m", input="go") as events:
            seen = [event async for event in events]
        failed = next(e.response for e in seen if e.type == "response.failed")
        kept = await client.responses.retrieve(failed.id)
    assert kept.status == "failed"
    assert kept.error is not None
    assert plain(kept) == plain(failed)


async def test_previous_response_id_with_a_conversation_is_a_400(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(database_url, monkeypatch, RecordingProvider(), auth=KEYS)
    async with sdk(app) as client:
        with pytest.raises(openai.BadRequestError, match="send one of them"):
            await client.responses.create(
                model="rec/m", input="x", previous_response_id="resp_1", extra_body={"conversation_id": "conv_1"}
            )


def responses_app(database_url: str, monkeypatch: pytest.MonkeyPatch, provider: RecordingProvider) -> Starlette:
    """An alias served first by OpenAI's Responses API, then by the recording provider."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    openai_provider = build_provider("openai", ProviderSpec("openai", OPENAI, "sk-openai-secret"), make_client("httpx"))
    deployments = [Deployment("openai", "gpt-5-codex", "responses"), Deployment("rec", "m")]
    config = GatewayConfig(auth=KEYS, models={"codex": ModelConfig(deployments=deployments, retries=0)})
    return make_app([provider, openai_provider], config)


@respx.mock
async def test_an_id_the_gateway_does_not_hold_goes_only_to_a_responses_deployment(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RecordingProvider()
    answer = fixture("responses_tool.json")
    route = respx.post(f"{OPENAI}/responses").mock(side_effect=streamed(answer, 9, "application/json"))
    app = responses_app(database_url, monkeypatch, provider)
    async with sdk(app) as client:
        await client.responses.create(model="codex", input="go on", previous_response_id="resp_openai_own")
        sent = orjson.loads(route.calls[0].request.content)
        assert sent["previous_response_id"] == "resp_openai_own"
        # OpenAI's own answer is OpenAI's to keep: the gateway stores only what it writes.
        assert await rows(app) == []
        route.mock(return_value=overloaded())
        with pytest.raises(openai.APIStatusError):
            await client.responses.create(model="codex", input="again", previous_response_id="resp_openai_own")
    assert provider.requests == []  # the fallback, which cannot know OpenAI's id, was never asked


@respx.mock
async def test_a_response_the_gateway_wrote_continues_on_openai_with_the_history_in_the_request(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RecordingProvider()
    app = responses_app(database_url, monkeypatch, provider)
    route = respx.post(f"{OPENAI}/responses")
    route.mock(return_value=overloaded())
    async with sdk(app) as client:
        first = await client.responses.create(model="codex", input="first")  # OpenAI is down: the fallback answers
        assert first.output_text == "answer 1"
        route.mock(side_effect=streamed(fixture("responses_tool.json"), 9, "application/json"))
        await client.responses.create(model="codex", input="second", previous_response_id=first.id)
    sent = orjson.loads(route.calls[-1].request.content)
    assert "previous_response_id" not in sent  # OpenAI does not know the gateway's ids
    texts = [
        item["content"] if isinstance(item["content"], str) else item["content"][0]["text"] for item in sent["input"]
    ]
    assert texts == ["first", "answer 1", "second"]


def overloaded() -> httpx.Response:
    return httpx.Response(503, json={"error": {"message": "overloaded", "type": "server_error"}})


async def test_a_client_that_leaves_mid_stream_leaves_a_cancelled_response_with_what_it_saw(
    database_url: str, monkeypatch: pytest.MonkeyPatch, live_servers: LiveServers
) -> None:
    """Against uvicorn on 127.0.0.1: the client really goes, and the stored response says so."""
    provider = RecordingProvider(delay=0.3)
    server = live_servers.start(gateway_app(database_url, monkeypatch, provider, auth=KEYS))
    async with httpx.AsyncClient(base_url=server.url, headers={"authorization": f"Bearer {ALICE}"}) as http:
        body = {"model": "rec/m", "input": "go", "stream": True}
        async with http.stream("POST", "/v1/responses", json=body) as response:
            async for line in response.aiter_lines():
                event = orjson.loads(line[5:]) if line.startswith("data:") else {}
                if event.get("type") == "response.created":
                    response_id = event["response"]["id"]
                if event.get("type") == "response.output_text.delta":
                    break  # and leave, with "answer " seen and "1" still to come
        stored = await http.get(f"/v1/responses/{response_id}")
        for _ in range(100):  # kept once the gateway has seen the client go
            if stored.status_code == 200:
                break
            await asyncio.sleep(0.05)
            stored = await http.get(f"/v1/responses/{response_id}")
    kept = stored.json()
    assert (kept["status"], kept["output"][0]["content"][0]["text"]) == ("cancelled", "answer ")


async def test_a_store_that_is_down_still_answers_and_only_what_needs_it_is_a_503(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    app = gateway_app("postgresql://nobody:hunter2@127.0.0.1:1/none", monkeypatch, RecordingProvider(), auth=KEYS)
    async with sdk(app) as client:
        async with client.responses.stream(model="rec/m", input="hi") as events:
            answer = await events.get_final_response()  # store is on by default, but the client did not ask
        assert answer.output_text == "answer 1"
        with pytest.raises(openai.InternalServerError) as chained:
            await client.responses.create(model="rec/m", input="more", previous_response_id=answer.id)
        assert chained.value.status_code == 503
        with pytest.raises(openai.InternalServerError) as retrieved:
            await client.responses.retrieve(answer.id)
        assert retrieved.value.code == "conversation_store_unavailable"
    logged = capfd.readouterr().out
    assert "response_store_failed" in logged
    assert "hunter2" not in logged
