"""The intake: its instant checks, and an HTTP chat that watches the client from the moment its body is read."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.types import Message

from app.chat.intake import HttpChat, InFlight, Intake, conversation_id_of
from app.config import GatewayConfig
from app.conversations.responses import StoredResponses
from app.dialects.openai import CHAT_COMPLETIONS
from app.errors import ApiError
from app.http.access import AccessRecord
from app.services import Services
from providers.base import Finish, Start, TextDelta
from providers.request import CHAT_REQUEST_DECODER, ChatRequest
from providers.router import Router
from tests.fakes import ScriptedProvider


class HeldConversations:
    """Stands in for the store: ``begin`` waits, as a turn does behind another on its conversation."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.released = asyncio.Event()
        self.cancelled = False

    async def begin(self, chat: ChatRequest, conversation_id: str, owner: str) -> Any:
        self.waiting.set()
        try:
            await self.released.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return chat, None


def chat(**fields: Any) -> ChatRequest:
    body = {"model": "fake/fake", "stream": True, "messages": [{"role": "user", "content": "hi"}], **fields}
    return CHAT_REQUEST_DECODER.decode(orjson.dumps(body))


def intake(conversations: object = None) -> tuple[Intake, ScriptedProvider]:
    provider = ScriptedProvider([Start(), TextDelta("ok"), Finish("stop")])
    services = Services(Router([provider]), GatewayConfig(), b"")
    return Intake(services, conversations, None, StoredResponses(conversations)), provider  # type: ignore[arg-type]


class Client:
    """``receive`` and ``send`` for one HTTP request: the body is read; ``leave`` disconnects."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def test_a_client_that_leaves_while_its_turn_waits_is_never_served() -> None:
    held = HeldConversations()
    gate, provider = intake(held)
    record = AccessRecord()
    claim = gate.check(chat(conversation_id="c1"), CHAT_COMPLETIONS, record, "", None)
    client = Client()
    serving = asyncio.ensure_future(HttpChat(gate, claim)({"type": "http"}, client.receive, client.send))
    await asyncio.wait_for(held.waiting.wait(), 1)
    client.gone.set()
    await asyncio.wait_for(serving, 1)  # ends quietly
    assert held.cancelled
    assert (record.status, record.cancelled) == (499, "waiting_for_conversation")
    assert provider.requests == []
    assert client.sent == []


async def test_a_client_that_stays_is_served_and_a_late_disconnect_cancels_nothing() -> None:
    gate, provider = intake()
    record = AccessRecord()
    client = Client()
    await HttpChat(gate, gate.check(chat(), CHAT_COMPLETIONS, record, "", None))(
        {"type": "http"}, client.receive, client.send
    )
    client.gone.set()
    await asyncio.sleep(0)
    assert client.sent[0]["status"] == 200
    assert client.sent[-1]["more_body"] is False
    assert record.cancelled is None
    assert len(provider.requests) == 1


def test_running_cancel_before_anything_started_does_nothing() -> None:
    running = InFlight(AccessRecord())
    running.cancel()
    assert not running.left


def test_check_notes_the_model_and_refuses_several_choices() -> None:
    gate, _ = intake()
    record = AccessRecord()
    with pytest.raises(ApiError) as refused:
        gate.check(chat(n=2), CHAT_COMPLETIONS, record, "", None)
    assert (refused.value.status, refused.value.param) == (400, "n")
    assert record.model == "fake/fake"


@pytest.mark.parametrize(
    ("body_id", "header", "expected"),
    [(None, None, None), ("c-body", None, "c-body"), (None, "c-head", "c-head"), ("c-body", "c-head", "c-body")],
)
def test_the_conversation_is_the_body_s_else_the_header_s(
    body_id: str | None, header: str | None, expected: str | None
) -> None:
    assert conversation_id_of(chat(conversation_id=body_id), header) == expected


@pytest.mark.parametrize("header", ["", "x" * 129])
def test_a_conversation_header_out_of_bounds_is_a_400(header: str) -> None:
    with pytest.raises(ApiError, match="1 to 128 characters") as refused:
        conversation_id_of(chat(), header)
    assert refused.value.param == "X-Conversation-Id"
