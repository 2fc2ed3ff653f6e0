"""``GET /ws/chat``: several chats on one WebSocket, each cancellable, over the same pipeline.

Client frames: ``{"type": "chat", "request_id", "model", "messages", ...options}`` and
``{"type": "cancel", "request_id"}``. Server frames, each with the ``request_id``: ``status``
(``processing``), ``token``, ``reasoning``, ``tool_call``, ``complete``, ``error``. A malformed frame
gets an ``error`` frame and the socket stays open; closing the socket cancels everything it started.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Literal

import msgspec
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.auth import owner_of
from app.bodies import invalid_field
from app.chat import (
    CONVERSATION_HEADER,
    check_supported,
    conversation_id_of,
    join_conversation,
    note_request,
    with_tools,
)
from app.errors import ApiError, ErrorBody
from app.exchange import Exchange
from app.gateway import Gateway
from app.middleware import AccessRecord, write_access_log
from app.native import WebSocketEncoder, whole_answer
from providers.base import ProviderError
from providers.request import CHAT_REQUEST_DECODER, ChatRequest
from providers.router import Plan

WS_SCOPE = {"method": "WS", "path": "/ws/chat"}
ENCODER = msgspec.json.Encoder()


class Frame(msgspec.Struct):
    type: Literal["chat", "cancel"]
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


FRAME_DECODER = msgspec.json.Decoder(Frame)


class WebSocketOutlet:
    """One chat's frames on a shared socket; there is no status to commit, errors are frames."""

    committed = True
    keepalive: bytes | None = None  # the server's WebSocket pings keep the socket alive

    def __init__(self, session: ChatSocket):
        self.session = session

    async def commit(self, headers: list[tuple[bytes, bytes]]) -> None:
        return None

    async def write(self, frame: bytes) -> None:
        await self.session.send(frame)

    async def close(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self.session.send(frame)

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        raise RuntimeError("a WebSocket chat always streams")


class InFlight:
    """A chat on the socket: its task, and its exchange once the conversation (if any) is joined."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.exchange: Exchange | None = None

    def cancel(self) -> None:
        if self.exchange is not None:
            self.exchange.cancel()
        elif self.task is not None:
            self.task.cancel()


class ChatSocket:
    def __init__(self, websocket: WebSocket, gateway: Gateway):
        self.websocket = websocket
        self.gateway = gateway
        self.in_flight: dict[str, InFlight] = {}
        self.lock = asyncio.Lock()
        self.owner = owner_of(websocket.scope)
        self.conversation_header = websocket.headers.get(CONVERSATION_HEADER)  # the default for its chats

    async def run(self) -> None:
        await self.websocket.accept()
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.handle(message.get("text") or message.get("bytes") or b"")
        except WebSocketDisconnect:
            return
        finally:
            for running in list(self.in_flight.values()):
                running.cancel()  # closing the socket cancels everything it started
            tasks = [running.task for running in self.in_flight.values() if running.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def send(self, frame: bytes) -> None:
        async with self.lock:
            await self.websocket.send_text(frame.decode())

    async def reject(self, request_id: str | None, error: ApiError) -> None:
        body = ErrorBody(error.message, error.type, error.code, error.param, request_id or "")
        await self.send(ENCODER.encode({"type": "error", "request_id": request_id, "error": body}))

    async def handle(self, raw: str | bytes) -> None:
        try:
            frame = FRAME_DECODER.decode(raw)
        except msgspec.ValidationError as exc:
            await self.reject(None, invalid_field(str(exc)))
            return
        except msgspec.DecodeError as exc:
            await self.reject(
                None, ApiError(400, f"The frame is not valid JSON ({exc}); send one JSON object.", code="invalid_json")
            )
            return
        if frame.type == "cancel":
            await self.cancel(frame.request_id)
        else:
            await self.start(frame.request_id, raw)

    async def cancel(self, request_id: str) -> None:
        running = self.in_flight.get(request_id)
        if running is None:
            message = f"No request {request_id!r} is in flight on this socket; nothing was cancelled."
            await self.reject(request_id, ApiError(404, message, code="request_not_found", type="not_found_error"))
            return
        running.cancel()

    async def start(self, request_id: str, raw: str | bytes) -> None:
        if request_id in self.in_flight:
            message = f"Request {request_id!r} is already in flight on this socket; give each request its own id."
            await self.reject(request_id, ApiError(409, message, code="duplicate_request_id", param="request_id"))
            return
        record = AccessRecord()
        record.streamed = True  # its log line carries ttft_ms and chunks, like an HTTP stream's
        record.key_name = self.owner or None
        try:
            chat = CHAT_REQUEST_DECODER.decode(raw)
            note_request(record, chat, self.gateway.log_content)
            check_supported(chat)
            plan = self.gateway.router.resolve(chat.model)
            conversation_id = conversation_id_of(chat, self.conversation_header)
        except msgspec.ValidationError as exc:
            await self.reject(request_id, invalid_field(str(exc)))
            return
        except ProviderError as exc:
            await self.reject(request_id, ApiError.from_provider(exc))
            return
        except ApiError as exc:
            await self.reject(request_id, exc)
            return
        chat = msgspec.structs.replace(chat, stream=True)
        await self.send(ENCODER.encode({"type": "status", "request_id": request_id, "status": "processing"}))
        running = InFlight()
        self.in_flight[request_id] = running
        # Joining a conversation may wait for its turn in flight: in the chat's own task, so the socket reads on.
        running.task = asyncio.ensure_future(self.serve(request_id, chat, plan, conversation_id, record, running))

    async def serve(
        self,
        request_id: str,
        chat: ChatRequest,
        plan: Plan,
        conversation_id: str | None,
        record: AccessRecord,
        running: InFlight,
    ) -> None:
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                chat, tools = await with_tools(self.gateway, chat, plan, record)
                chat, turn = await join_conversation(self.gateway, chat, conversation_id, self.owner)
                running.exchange = exchange = Exchange(
                    self.gateway,
                    chat,
                    plan,
                    record,
                    f"msg_{uuid.uuid4().hex}",
                    WebSocketEncoder(request_id),
                    whole_answer,
                    turn,
                    tools,
                )
                await exchange.serve(WebSocketOutlet(self), request_id)
                record.status = 499 if record.cancelled else 200
            except ApiError as exc:
                record.status, record.error = exc.status, exc.code
                await self.reject(request_id, exc)
            except asyncio.CancelledError:
                record.status, record.cancelled = 499, "waiting_for_conversation"
            except WebSocketDisconnect:
                if running.exchange is not None:
                    record.cancelled = record.cancelled or running.exchange.phase
            finally:
                self.in_flight.pop(request_id, None)
                write_access_log(WS_SCOPE, record)


async def chat_websocket(websocket: WebSocket) -> None:
    await ChatSocket(websocket, websocket.app.state.gateway).run()
