"""Ollama's ``POST /api/chat``, streamed as NDJSON: one JSON object per line, ending with ``done: true``.

Images must be inline (base64 in ``images``); tool calls arrive whole with object arguments, and
``done_reason`` stays ``stop`` when tools were called. An ``{"error"}`` line can arrive with HTTP 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
from msgspec import Struct

from providers._errors import common_error, in_band_error
from providers._http import HttpProvider, ModelOnce, StreamMapper, decode_json
from providers._lines import NDJSONDecoder
from providers._translate import inline_image, tool_arguments, tool_name_for, tool_names
from providers.base import (
    Deployment,
    Event,
    Finish,
    FinishReason,
    InvalidRequestError,
    ReasoningDelta,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    new_tool_call_id,
)
from providers.embeddings import Embedded, EmbeddingRequest, embedded, texts_only
from providers.request import (
    JSON_ENCODER,
    AssistantMessage,
    ChatRequest,
    DeveloperMessage,
    FilePart,
    ImagePart,
    Message,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    SystemMessage,
    Tool,
    ToolMessage,
    UserMessage,
    message_text,
)

DEFAULT_BASE_URL = "http://127.0.0.1:11434"


class OllamaFunction(Struct):
    name: str
    arguments: Any


class OllamaToolCall(Struct):
    function: OllamaFunction


class OllamaMessage(Struct, omit_defaults=True):
    role: str
    content: str
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class Options(Struct, omit_defaults=True):
    temperature: float | None = None
    top_p: float | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    seed: int | None = None


class ChatBody(Struct, omit_defaults=True):
    model: str
    messages: list[OllamaMessage]
    stream: bool
    tools: list[Tool] | None = None
    options: Options | None = None
    think: bool | str | None = None
    format: str | dict[str, Any] | None = None


def chat_body(request: ChatRequest, model: str) -> ChatBody:
    names, stop = tool_names(request), request.stop
    options = Options(
        temperature=request.temperature,
        top_p=request.top_p,
        num_predict=request.token_limit,
        stop=[stop] if isinstance(stop, str) else stop,
        seed=request.seed,
    )
    return ChatBody(
        model=model,
        messages=[ollama_message(m, names) for m in request.messages],
        stream=True,
        tools=request.function_tools or None,
        options=options if options != Options() else None,
        think=think(request.reasoning_effort),
        format=response_format(request),
    )


def ollama_message(message: Message, names: Mapping[str, str]) -> OllamaMessage:
    match message:
        case UserMessage(content=str() as text):
            return OllamaMessage("user", text)
        case UserMessage(content=list() as parts):
            if any(isinstance(p, FilePart) for p in parts):
                raise InvalidRequestError(
                    "Ollama cannot read files. Send the document's text as a text part, or use a model of "
                    "another provider.",
                    param="messages",
                )
            images = [inline_image(p, "Ollama")[1] for p in parts if isinstance(p, ImagePart)]
            return OllamaMessage("user", message_text(parts), images=images or None)
        case AssistantMessage(tool_calls=calls):
            called = [OllamaToolCall(OllamaFunction(c.function.name, tool_arguments(c))) for c in calls or ()]
            return OllamaMessage("assistant", message_text(message.content), tool_calls=called or None)
        case ToolMessage(tool_call_id=call_id):
            name = tool_name_for(dict(names), call_id, "Ollama")
            return OllamaMessage("tool", message_text(message.content), tool_name=name, tool_call_id=call_id)
        case SystemMessage() | DeveloperMessage():
            return OllamaMessage("system", message_text(message.content))
    raise AssertionError(f"unhandled message {type(message).__name__}")


def think(effort: str | None) -> bool | str | None:
    """Ollama's ``think``: off for none, a level where models take one, on otherwise."""
    if effort is None:
        return None
    if effort == "none":
        return False
    return effort if effort in ("low", "medium", "high") else True


def response_format(request: ChatRequest) -> str | dict[str, Any] | None:
    match request.response_format:
        case ResponseFormatJsonSchema(json_schema=schema):
            return schema.schema or "json"
        case ResponseFormatJsonObject():
            return "json"
    return None


# The stream, as wire structs holding only the fields read.
class WireFunction(Struct):
    name: str = ""
    arguments: Any = None


class WireToolCall(Struct):
    function: WireFunction
    id: str | None = None


class WireMessage(Struct):
    content: str | None = None
    thinking: str | None = None
    tool_calls: list[WireToolCall] | None = None


class Line(Struct):
    message: WireMessage | None = None
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    prompt_eval_cached_count: int | None = None
    error: Any = None


class FirstLine(Line):
    model: str | None = None  # read from the first line only: every line repeats it


LINE_DECODER = msgspec.json.Decoder(Line)
FIRST_LINE_DECODER = msgspec.json.Decoder(FirstLine)


class OllamaStream:
    """Reads Ollama's NDJSON into canonical events; the ``done: true`` line is the terminator."""

    def __init__(self, provider: str):
        self.provider = provider
        self.lines = NDJSONDecoder()
        self.tool_calls = 0
        self.done = False
        self.lines_read: ModelOnce[Line] = ModelOnce(FIRST_LINE_DECODER, LINE_DECODER)

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        for line in self.lines.feed(chunk):
            self.read(line, events)
        return events

    def end(self) -> list[Event]:
        events: list[Event] = []
        for line in self.lines.flush():
            self.read(line, events)
        if not self.done:
            raise StreamTruncatedError(
                f"{self.provider}'s stream ended before its done line, so the answer is incomplete. Retry the request."
            )
        return events

    def read(self, raw: bytes, events: list[Event]) -> None:
        if self.done:
            return
        line = self.lines_read.decode(raw, self.provider, events)
        if line.error is not None:
            said = line.error if isinstance(line.error, str) else common_error(raw).message
            raise in_band_error(self.provider, said, None)
        message = line.message
        if message is not None:
            if message.thinking:
                events.append(ReasoningDelta(message.thinking))
            if message.content:
                events.append(TextDelta(message.content))
            for call in message.tool_calls or ():
                index, self.tool_calls = self.tool_calls, self.tool_calls + 1
                events.append(ToolCallStart(index, call.id or new_tool_call_id(), call.function.name))
                events.append(ToolCallDelta(index, JSON_ENCODER.encode(call.function.arguments or {}).decode()))
        if line.done:
            self.done = True
            events += self.closing(line)

    def closing(self, line: Line) -> list[Event]:
        if not line.done_reason:
            # Ollama leaves the reason empty when its runner's connection closed early.
            raise StreamTruncatedError(f"{self.provider} ended the answer without a reason; it may be incomplete.")
        usage = Usage(line.prompt_eval_count or 0, line.eval_count or 0, line.prompt_eval_cached_count or 0)
        reason: FinishReason = "length" if line.done_reason == "length" else "tool_calls" if self.tool_calls else "stop"
        return [usage, Finish(reason)]


class OllamaProvider(HttpProvider):
    default_base_url = DEFAULT_BASE_URL
    accept = "application/x-ndjson"

    def build_request(self, request: ChatRequest, deployment: Deployment) -> httpx.Request:
        return self.post(f"{self.base_url}/api/chat", JSON_ENCODER.encode(chat_body(request, deployment.model)))

    def mapper(self, request: ChatRequest, deployment: Deployment) -> StreamMapper:
        return OllamaStream(self.name)

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embedded:
        body = EmbedBody(deployment.model, texts_only(request, self.name), request.dimensions)
        raw = await self.fetch(f"{self.base_url}/api/embed", JSON_ENCODER.encode(body), deployment)
        answer = decode_json(EMBED_DECODER, raw, self.name)
        return embedded(list(answer.embeddings), request, answer.prompt_eval_count, self.name)


class EmbedBody(Struct, omit_defaults=True):
    model: str
    input: list[str]
    dimensions: int | None = None


class EmbedAnswer(Struct):
    embeddings: list[list[float]]
    prompt_eval_count: int = 0


EMBED_DECODER = msgspec.json.Decoder(EmbedAnswer)
