"""Stored conversations through ``POST /v1/messages``, on both stores: the history goes upstream before
the client's turn, the answer is stored, and the same conversation can go on from either API."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import respx

from app.config import ConversationSettings, GatewayConfig, HttpSettings
from app.main import create_app
from providers.catalog import ProviderSpec
from tests.app.conversations.helpers import (
    NO_RETRIES,
    RecordingProvider,
    ask,
    gateway_app,
    new_conversation,
    serving,
    stored,
)
from tests.providers.streams import fixture, streamed


async def message(client: httpx.AsyncClient, conversation: str | None, text: str, **extra: Any) -> httpx.Response:
    body = {"model": "rec/m", "max_tokens": 50, "messages": [{"role": "user", "content": text}], **extra}
    headers = {"x-conversation-id": conversation} if conversation else {}
    return await client.post("/v1/messages", json=body, headers=headers)


async def test_turns_on_messages_send_the_history_and_store_the_answers(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RecordingProvider()
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        conversation = await new_conversation(client)
        first = await message(client, None, "first", conversation_id=conversation)
        assert first.json()["content"] == [{"type": "text", "text": "answer 1"}]
        streamed_turn = await message(client, conversation, "second", stream=True)  # by the header this time
        assert b'"text":"2"' in streamed_turn.content
        assert b"event: message_stop" in streamed_turn.content
        assert provider.sent() == [("user", "first"), ("assistant", "answer 1"), ("user", "second")]
        # The same conversation goes on through Chat Completions, with the history Messages left.
        await ask(client, conversation, "third")
        assert provider.sent()[:4] == [
            ("user", "first"),
            ("assistant", "answer 1"),
            ("user", "second"),
            ("assistant", "answer 2"),
        ]
        messages = await stored(client, conversation)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first"),
        ("assistant", "answer 1"),
        ("user", "second"),
        ("assistant", "answer 2"),
        ("user", "third"),
        ("assistant", "answer 3"),
    ]


async def test_an_unknown_conversation_is_anthropic_s_not_found(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        response = await message(client, None, "hi", conversation_id="no-such-conversation")
    assert response.status_code == 404
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "not_found_error"
    assert response.headers["request-id"] == response.json()["request_id"]


@respx.mock
async def test_a_conversation_with_an_anthropic_model_is_translated_with_its_history(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history is the gateway's: the request goes up rebuilt (and answers come back as events it
    frames itself), never as the client's body with only the model rewritten."""
    route = respx.post("https://anthropic.test/v1/messages").mock(
        side_effect=streamed(fixture("anthropic_thinking.sse"), 5)
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    config = GatewayConfig(
        http=HttpSettings(transport="httpx"),
        reliability=NO_RETRIES,
        conversations=ConversationSettings(),
        providers={"anthropic": ProviderSpec("anthropic", "https://anthropic.test", "sk-ant")},
    )
    app = create_app(config)
    async with serving(app) as client:
        conversation = await new_conversation(client)
        body = {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 50, "conversation_id": conversation}
        for text in ("one", "two"):
            response = await client.post(
                "/v1/messages",
                json={**body, "stream": True, "messages": [{"role": "user", "content": text}], "future_field": 1},
            )
            assert response.status_code == 200
        second = orjson.loads(route.calls[1].request.content)
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"] == [{"type": "text", "text": "Hello"}]
    assert "future_field" not in second
    assert "conversation_id" not in second
    assert b"signature_delta" in response.content  # framed by the gateway, signature included
