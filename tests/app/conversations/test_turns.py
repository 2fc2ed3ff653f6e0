"""Turns on a stored conversation through the chat APIs, with a recording provider, on both stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import pytest
import respx
from starlette.testclient import TestClient

from app.config import ConversationSettings, GatewayConfig, HistoryLimits, HttpSettings
from app.conversations import turns
from app.conversations.database import DatabaseError
from app.conversations.engines import open_database
from app.conversations.store import ConversationStore
from app.conversations.turns import Conversations
from app.http.auth import AuthSettings, GatewayKey
from app.main import create_app
from providers.base import Event, Finish, Start, ToolCallDelta, ToolCallStart, Usage
from providers.catalog import ProviderSpec
from providers.request import CHAT_REQUEST_DECODER
from tests.app.conversations.helpers import (
    NO_RETRIES,
    RecordingProvider,
    ask,
    gateway_app,
    new_conversation,
    serving,
    stored,
)
from tests.conftest import LiveServer, make_app
from tests.fakes import ScriptedProvider
from tests.providers.streams import fixture, streamed


async def test_three_turns_send_the_whole_history_upstream(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = RecordingProvider()
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        conversation = await new_conversation(client)
        for turn, text in enumerate(["first", "second", "third"], start=1):
            response = await ask(client, conversation, text)
            assert response.json()["choices"][0]["message"]["content"] == f"answer {turn}"
        assert provider.sent() == [
            ("user", "first"),
            ("assistant", "answer 1"),
            ("user", "second"),
            ("assistant", "answer 2"),
            ("user", "third"),
        ]
        messages = await stored(client, conversation)
    assert [(m["seq"], m["role"], m["content"]) for m in messages] == [
        (0, "user", "first"),
        (1, "assistant", "answer 1"),
        (2, "user", "second"),
        (3, "assistant", "answer 2"),
        (4, "user", "third"),
        (5, "assistant", "answer 3"),
    ]
    answer = messages[5]
    assert (answer["model"], answer["finish_reason"], answer["incomplete"]) == ("rec/m", "stop", False)
    assert answer["usage"]["prompt_tokens"] == 7


async def test_history_goes_after_the_system_message_which_is_not_stored(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RecordingProvider()
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        conversation = await new_conversation(client)
        await ask(client, conversation, "first")
        system = {"role": "system", "content": "be brief"}
        body = {"model": "rec/m", "conversation_id": conversation}
        await client.post(
            "/v1/chat/completions", json={**body, "messages": [system, {"role": "user", "content": "next"}]}
        )
        assert provider.sent() == [
            ("system", "be brief"),
            ("user", "first"),
            ("assistant", "answer 1"),
            ("user", "next"),
        ]
        assert [m["role"] for m in await stored(client, conversation)] == ["user", "assistant", "user", "assistant"]


async def test_streamed_turns_are_stored_before_the_stream_ends(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        conversation = await new_conversation(client)
        response = await ask(client, conversation, "hi", stream=True)
        assert response.text.endswith("data: [DONE]\n\n")
        # Read straight after [DONE]: the answer is already there.
        assert [m["content"] for m in await stored(client, conversation)] == ["hi", "answer 1"]


async def test_the_header_names_the_conversation_too(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = RecordingProvider()
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        conversation = await new_conversation(client)
        for text in ("one", "two"):
            await client.post(
                "/v1/chat/completions",
                json={"model": "rec/m", "messages": [{"role": "user", "content": text}]},
                headers={"X-Conversation-Id": conversation},
            )
        assert provider.sent() == [("user", "one"), ("assistant", "answer 1"), ("user", "two")]


async def test_the_native_api_keeps_conversations_streamed_or_not(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RecordingProvider()
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        conversation = await new_conversation(client)
        body = {"model": "rec/m", "messages": [{"role": "user", "content": "one"}], "conversation_id": conversation}
        whole = await client.post("/api/v1/chat", json=body)
        assert whole.json()["content"] == "answer 1"
        events = await client.post(
            "/api/v1/chat",
            json={**body, "messages": [{"role": "user", "content": "two"}]},
            headers={"accept": "text/event-stream"},
        )
        assert "event: complete" in events.text
        assert provider.sent() == [("user", "one"), ("assistant", "answer 1"), ("user", "two")]
        assert len(await stored(client, conversation)) == 4


def test_the_websocket_keeps_conversations(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = RecordingProvider()
    app = gateway_app(database_url, monkeypatch, provider)
    with TestClient(app) as client:
        conversation = client.post("/api/v1/conversations").json()["id"]
        with client.websocket_connect("/ws/chat") as socket:
            for number, text in enumerate(("one", "two"), start=1):
                socket.send_json(
                    {
                        "type": "chat",
                        "request_id": f"r{number}",
                        "model": "rec/m",
                        "conversation_id": conversation,
                        "messages": [{"role": "user", "content": text}],
                    }
                )
                while (frame := socket.receive_json())["type"] != "complete":
                    assert frame["type"] != "error", frame
        assert provider.sent() == [("user", "one"), ("assistant", "answer 1"), ("user", "two")]
        assert client.get(f"/api/v1/conversations/{conversation}").json()["message_count"] == 4


def test_a_websocket_chat_on_an_unknown_conversation_gets_an_error_frame(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(database_url, monkeypatch, RecordingProvider())
    with TestClient(app) as client, client.websocket_connect("/ws/chat") as socket:
        socket.send_json(
            {
                "type": "chat",
                "request_id": "r1",
                "model": "rec/m",
                "conversation_id": "conv_nope",
                "messages": [{"role": "user", "content": "hi"}],
            }
        )
        assert socket.receive_json()["type"] == "status"
        frame = socket.receive_json()
        assert (frame["type"], frame["request_id"], frame["error"]["code"]) == ("error", "r1", "conversation_not_found")


async def test_the_window_is_set_per_model(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = RecordingProvider()
    settings = ConversationSettings(max_messages=20, models={"rec/m": HistoryLimits(max_messages=2)})
    async with serving(gateway_app(database_url, monkeypatch, provider, conversations=settings)) as client:
        conversation = await new_conversation(client)
        for text in ("one", "two", "three"):
            await ask(client, conversation, text)
        assert provider.sent() == [("user", "two"), ("assistant", "answer 2"), ("user", "three")]
        assert len(await stored(client, conversation)) == 6  # the window limits what is sent, not what is kept


async def test_the_token_budget_drops_the_oldest_messages(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = RecordingProvider()
    settings = ConversationSettings(models={"rec/m": HistoryLimits(max_tokens=60)})
    async with serving(gateway_app(database_url, monkeypatch, provider, conversations=settings)) as client:
        conversation = await new_conversation(client)
        for text in ("a" * 100, "two", "three"):
            await ask(client, conversation, text)
        # The 100-character first message (about 29 tokens) no longer fits beside the rest.
        assert provider.sent() == [("user", "two"), ("assistant", "answer 2"), ("user", "three")]


async def test_a_stream_that_fails_midway_keeps_what_the_client_saw(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider(fail_after=1))) as client:
        conversation = await new_conversation(client)
        response = await ask(client, conversation, "hi", stream=True)
        assert '"error"' in response.text
        assert "[DONE]" not in response.text
        user, answer = await stored(client, conversation)
    assert user["content"] == "hi"
    assert (answer["content"], answer["incomplete"], answer["error"], answer["finish_reason"]) == (
        "answer ",
        True,
        "upstream_unavailable",
        None,
    )


async def test_a_failure_before_the_answer_began_stores_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider(fail_after=0))) as client:
        conversation = await new_conversation(client)
        streamed = await ask(client, conversation, "hi", stream=True)
        assert '"code":"upstream_unavailable"' in streamed.text  # the upstream answered, then failed before any text
        assert (await ask(client, conversation, "hi")).status_code == 503
        assert await stored(client, conversation) == []
        # ... and the conversation is free again for the client's retry.
        assert (await ask(client, conversation, "hi")).status_code == 503


async def test_tool_calls_and_their_results_make_the_round_trip(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    call: list[Event] = [
        Start(),
        ToolCallStart(0, "call_1", "weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"Oslo"}'),
    ]
    provider = ScriptedProvider([*call, Usage(1, 1), Finish("tool_calls")], name="rec", models=("m",))
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        conversation = await new_conversation(client)
        await ask(client, conversation, "weather in Oslo?")
        result = {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        body = {"model": "rec/m", "messages": [result], "conversation_id": conversation}
        await client.post("/v1/chat/completions", json=body)
        sent = provider.requests[-1].messages
        assert [type(m).__name__ for m in sent] == ["UserMessage", "AssistantMessage", "ToolMessage"]
        assert msgspec.to_builtins(sent[1].tool_calls) == [  # type: ignore[union-attr]
            {"id": "call_1", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}, "type": "function"}
        ]
        roles = [m["role"] for m in await stored(client, conversation)]
        assert roles == ["user", "assistant", "tool", "assistant"]


async def test_a_second_turn_waits_for_the_first_and_sees_its_answer(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RecordingProvider(delay=0.05)
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        conversation = await new_conversation(client)
        first = asyncio.ensure_future(ask(client, conversation, "first"))
        await asyncio.sleep(0.02)
        second = await ask(client, conversation, "second")
        assert (await first).status_code == second.status_code == 200
        assert provider.sent() == [("user", "first"), ("assistant", "answer 1"), ("user", "second")]
        assert [m["content"] for m in await stored(client, conversation)] == ["first", "answer 1", "second", "answer 2"]


async def test_a_turn_that_waits_too_long_gets_a_409(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ConversationSettings(turn_wait_seconds=0.05)
    async with serving(
        gateway_app(database_url, monkeypatch, RecordingProvider(delay=0.2), conversations=settings)
    ) as client:
        conversation = await new_conversation(client)
        first = asyncio.ensure_future(ask(client, conversation, "first"))
        await asyncio.sleep(0.05)
        second = await ask(client, conversation, "second")
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "conversation_busy"
        assert second.headers["retry-after"] == "1"
        assert (await first).status_code == 200
        assert [m["content"] for m in await stored(client, conversation)] == ["first", "answer 1"]


async def test_an_unknown_conversation_is_a_404_and_reaches_no_model(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RecordingProvider()
    async with serving(gateway_app(database_url, monkeypatch, provider)) as client:
        response = await ask(client, "conv_missing", "hi")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "conversation_not_found"
    assert response.json()["error"]["param"] == "conversation_id"
    assert provider.requests == []


async def test_another_keys_conversation_does_not_exist_for_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = AuthSettings(keys=[GatewayKey("alice", "key-alice"), GatewayKey("bob", "key-bob")])
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider(), auth=auth)) as client:
        alice = {"authorization": "Bearer key-alice"}
        bob = {"authorization": "Bearer key-bob"}
        created = await client.post("/api/v1/conversations", headers=alice)
        conversation = created.json()["id"]
        body = {"model": "rec/m", "messages": [{"role": "user", "content": "hi"}], "conversation_id": conversation}
        assert (await client.post("/v1/chat/completions", json=body, headers=bob)).status_code == 404
        assert (await client.get(f"/api/v1/conversations/{conversation}", headers=bob)).status_code == 404
        assert (await client.delete(f"/api/v1/conversations/{conversation}", headers=bob)).status_code == 404
        assert (await client.get("/api/v1/conversations", headers=bob)).json()["data"] == []
        assert (await client.post("/v1/chat/completions", json=body, headers=alice)).status_code == 200
        assert [c["id"] for c in (await client.get("/api/v1/conversations", headers=alice)).json()["data"]] == [
            conversation
        ]


async def test_a_conversation_deleted_mid_turn_stores_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider(delay=0.05))) as client:
        conversation = await new_conversation(client)
        turn = asyncio.ensure_future(ask(client, conversation, "hi"))
        await asyncio.sleep(0.02)
        assert (await client.delete(f"/api/v1/conversations/{conversation}")).status_code == 204
        assert (await turn).status_code == 200
        assert (await client.get(f"/api/v1/conversations/{conversation}")).status_code == 404


async def test_a_store_that_is_down_is_a_503_for_conversations_only(monkeypatch: pytest.MonkeyPatch) -> None:
    app = gateway_app("postgresql://nobody@127.0.0.1:1/none", monkeypatch, RecordingProvider())
    async with serving(app) as client:
        response = await ask(client, "conv_x", "hi")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "conversation_store_unavailable"
        listing = await client.get("/api/v1/conversations")
        assert listing.status_code == 503
        plain = await client.post(
            "/v1/chat/completions", json={"model": "rec/m", "messages": [{"role": "user", "content": "x"}]}
        )
        assert plain.status_code == 200


async def test_requests_without_a_conversation_never_open_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(f"sqlite:///{tmp_path}/never/conversations.db", monkeypatch, RecordingProvider())
    async with serving(app) as client:
        body = {"model": "rec/m", "messages": [{"role": "user", "content": "x"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert not (tmp_path / "never").exists()  # SQLite makes the directory when it opens the store


@pytest.mark.parametrize(
    ("model", "url", "stream_fixture", "history_key"),
    [
        ("anthropic/claude-sonnet-4-5", "https://anthropic.test/v1/messages", "anthropic_thinking.sse", "messages"),
        (
            "gemini/gemini-2.5-flash",
            "https://gemini.test/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "gemini_text.sse",
            "contents",
        ),
        ("ollama/llama3.2", "http://ollama.test:11434/api/chat", "ollama_text.ndjson", "messages"),
    ],
)
async def test_history_reaches_each_vendor_in_its_own_dialect(
    database_url: str, monkeypatch: pytest.MonkeyPatch, model: str, url: str, stream_fixture: str, history_key: str
) -> None:
    config = GatewayConfig(
        reliability=NO_RETRIES,
        http=HttpSettings(transport="httpx"),  # respx fakes httpx's own transport
        providers={
            "anthropic": ProviderSpec("anthropic", "https://anthropic.test", "sk-ant-secret"),
            "gemini": ProviderSpec("gemini", "https://gemini.test", "AIza-secret"),
            "ollama": ProviderSpec("ollama", "http://ollama.test:11434"),
        },
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    content_type = "application/x-ndjson" if stream_fixture.endswith("ndjson") else "text/event-stream"
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(url).mock(side_effect=streamed(fixture(stream_fixture), content_type=content_type))
        async with serving(create_app(config)) as client:
            conversation = await new_conversation(client)
            system = {"role": "system", "content": "be brief"}
            for text in ("first", "second"):
                body = {"model": model, "stream": True, "conversation_id": conversation}
                body["messages"] = [system, {"role": "user", "content": text}]
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
            answer = (await stored(client, conversation))[1]["content"]
    sent = orjson.loads(route.calls[-1].request.content)
    history = [entry for entry in sent[history_key] if entry.get("role") != "system"]
    assert len(history) == 3  # first, its answer, second; the system prompt goes where the vendor wants it
    assert answer
    assert orjson.dumps(history).count(answer.encode()[:10]) == 1
    assert b"be brief" in route.calls[-1].request.content


async def test_a_store_that_failed_to_open_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the store's directory should be")
    conversations = Conversations(
        ConversationStore(open_database(f"sqlite:///{blocker}/conversations.db")), ConversationSettings()
    )
    with pytest.raises(DatabaseError, match="Cannot open"):
        await conversations.ready()
    blocker.unlink()
    with pytest.raises(DatabaseError):  # within REOPEN_SECONDS: the same error at once, no new attempt
        await conversations.ready()
    monkeypatch.setattr(turns, "REOPEN_SECONDS", 0.0)
    await conversations.ready()
    assert (tmp_path / "blocker" / "conversations.db").exists()
    await conversations.close()


def test_a_gateway_starts_without_its_store_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:hunter2@127.0.0.1:1/none")
    with LiveServer(make_app([RecordingProvider()])) as live:
        assert httpx.get(f"{live.url}/health").status_code == 200
        plain = {"model": "rec/m", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(f"{live.url}/v1/chat/completions", json=plain).status_code == 200
        refused = httpx.post(f"{live.url}/api/v1/conversations")
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "conversation_store_unavailable")
    logged = capfd.readouterr().out
    assert '"event":"conversation_store_unavailable"' in logged
    assert "hunter2" not in logged


async def test_waiting_for_another_replica_leaves_nothing_behind(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(database_url, monkeypatch, RecordingProvider())
    conversations: Conversations = app.state.conversations
    async with serving(app) as client:
        conversation = await new_conversation(client)
        # Another replica's turn holds the conversation; only polling can see it end.
        assert (await conversations.store.take(conversation, "", "elsewhere/1", time.time(), 60, 0))[0] == "acquired"
        waiting = asyncio.ensure_future(ask(client, conversation, "after the other replica"))
        await asyncio.sleep(0.1)
        assert conversations.waiting == {conversation: 1}
        await conversations.store.release(conversation, "elsewhere/1")
        assert (await waiting).status_code == 200
    assert (conversations.released, conversations.waiting, conversations.held) == ({}, {}, 0)


async def test_a_turn_cancelled_with_its_lease_trip_in_flight_frees_the_lease(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(database_url, monkeypatch, RecordingProvider())
    conversations: Conversations = app.state.conversations
    async with serving(app) as client:
        conversation = await new_conversation(client)
        store, take, arrived = conversations.store, conversations.store.take, asyncio.Event()

        async def slow_answer(*args: Any) -> Any:
            result = await take(*args)  # the database took the lease...
            arrived.set()
            await asyncio.sleep(10)  # ...and the answer is still on its way back when the client leaves
            return result

        monkeypatch.setattr(store, "take", slow_answer)
        chat = CHAT_REQUEST_DECODER.decode(b'{"model":"rec/m","messages":[{"role":"user","content":"x"}]}')
        begin = asyncio.ensure_future(conversations.begin(chat, conversation, ""))
        await arrived.wait()
        begin.cancel()
        with pytest.raises(asyncio.CancelledError):
            await begin
        monkeypatch.setattr(store, "take", take)
        await asyncio.wait_for(asyncio.gather(*conversations.pending), 5)
        assert (await store.take(conversation, "", "next/1", time.time(), 60, 0))[0] == "acquired"
