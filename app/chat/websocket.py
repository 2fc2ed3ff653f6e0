"""``GET /ws/chat``: several chats on one WebSocket, each cancellable, over the same pipeline.

Client frames: ``{"type": "chat", "request_id", "model", "messages", ...options}`` and
``{"type": "cancel", "request_id"}``. Server frames, each with the ``request_id``: ``status``
(``processing``), ``token``, ``reasoning``, ``tool_call``, ``complete``, ``error``. A malformed frame
gets an ``error`` frame and the socket stays open; closing the socket cancels everything it started.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import msgspec
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.chat.intake import CONVERSATION_HEADER, Claim, InFlight, Intake, intake_of
from app.chat.outlets import SocketOutlet
from app.dialects.native import NativeSocket, socket_error, socket_frame
from app.errors import ApiError
from app.http.access import AccessRecord, write_access_log
from app.http.auth import owner_of
from app.http.bodies import invalid_field
from app.ops.tracing import trace_context
from providers.base import ProviderError
from providers.request import CHAT_REQUEST_DECODER

WS_SCOPE = {"method": "WS", "path": "/ws/chat"}


class Frame(msgspec.Struct):
    type: Literal["chat", "cancel"]
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


FRAME_DECODER = msgspec.json.Decoder(Frame)


class ChatSocket:
    def __init__(self, websocket: WebSocket, intake: Intake):
        self.websocket = websocket
        self.intake = intake
        self.in_flight: dict[str, InFlight] = {}
        self.lock = asyncio.Lock()
        self.owner = owner_of(websocket.scope)
        self.conversation_header = websocket.headers.get(CONVERSATION_HEADER)  # the default for its chats
        self.trace = trace_context(websocket.headers)

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
        await self.send(socket_error(request_id, error))

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
            chat = msgspec.structs.replace(CHAT_REQUEST_DECODER.decode(raw), stream=True)
            claim = self.intake.check(
                chat, NativeSocket(request_id), record, self.owner, self.conversation_header, trace=self.trace
            )
        except msgspec.ValidationError as exc:
            await self.reject(request_id, invalid_field(str(exc)))
            return
        except ProviderError as exc:
            await self.reject(request_id, ApiError.from_provider(exc))
            return
        except ApiError as exc:
            await self.reject(request_id, exc)
            return
        await self.send(socket_frame("status", request_id, {"status": "processing"}))
        running = self.in_flight[request_id] = InFlight(record)
        # Admission may wait for the conversation's turn in flight: in the chat's own task, so the socket reads on.
        running.task = asyncio.ensure_future(self.serve(request_id, claim, running))

    async def serve(self, request_id: str, claim: Claim, running: InFlight) -> None:
        record = claim.record
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.intake.serve(claim, running, SocketOutlet(self.send), request_id)
                record.status = 499 if record.cancelled else 200
            except ApiError as exc:
                record.status, record.error = exc.status, exc.code
                await self.reject(request_id, exc)
            except WebSocketDisconnect:
                if running.exchange is not None:
                    record.cancelled = record.cancelled or running.exchange.phase
            finally:
                self.in_flight.pop(request_id, None)
                write_access_log(WS_SCOPE, record, request_id)


async def chat_websocket(websocket: WebSocket) -> None:
    await ChatSocket(websocket, intake_of(websocket)).run()
