"""A gateway with a recording provider and a conversation store, for the conversation tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config import ConversationSettings, GatewayConfig, Reliability
from app.conversations.turns import Conversations
from providers.base import Deployment, Event, Finish, Start, TextDelta, UpstreamUnavailableError, Usage
from providers.request import ChatRequest, message_text
from tests.conftest import asgi_client, make_app

NO_RETRIES = Reliability(retries=0)


class RecordingProvider:
    """Answers ``answer <n>`` to the n-th request, slowly when asked, and keeps every request it got."""

    name = "rec"
    models: tuple[str, ...] = ("m",)

    def __init__(self, delay: float = 0.0, fail_after: int | None = None):
        self.requests: list[ChatRequest] = []
        self.delay = delay
        self.fail_after = fail_after  # tokens before a mid-stream failure

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        self.requests.append(request)
        number = len(self.requests)
        yield Start()
        for position, word in enumerate(["answer ", f"{number}"]):
            if self.fail_after is not None and position == self.fail_after:
                raise UpstreamUnavailableError("the fake vendor fell over")
            await asyncio.sleep(self.delay)
            yield TextDelta(word)
        yield Usage(prompt_tokens=7, completion_tokens=2)
        yield Finish("stop")

    async def aclose(self) -> None:
        return None

    def sent(self, index: int = -1) -> list[tuple[str, str]]:
        """(role, text) of every message the upstream received in request ``index``."""
        return [
            (type(m).__name__.removesuffix("Message").lower(), message_text(m.content))
            for m in self.requests[index].messages
        ]


def gateway_app(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    provider: Any,
    **config: Any,
) -> Starlette:
    monkeypatch.setenv("DATABASE_URL", database_url)
    config.setdefault("reliability", NO_RETRIES)
    config.setdefault("conversations", ConversationSettings())
    return make_app([provider], GatewayConfig(**config))


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client; the store is closed afterwards, as the lifespan would."""
    conversations: Conversations = app.state.conversations
    try:
        async with asgi_client(app) as client:
            yield client
    finally:
        await conversations.close()


async def new_conversation(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/api/v1/conversations", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def ask(client: httpx.AsyncClient, conversation_id: str, text: str, **extra: Any) -> httpx.Response:
    body = {"model": "rec/m", "messages": [{"role": "user", "content": text}], "conversation_id": conversation_id}
    return await client.post("/v1/chat/completions", json={**body, **extra})


async def stored(client: httpx.AsyncClient, conversation_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages
