"""OpenAI Chat Completions, for api.openai.com and any OpenAI-compatible server (vLLM, llama.cpp, Groq, ...).

A deployment with ``api: responses`` goes to ``OpenAIResponsesProvider`` (``openai_responses``) instead.
The request is the client's own dialect, so it is re-encoded nearly as sent; the stream is read for
text, reasoning (``reasoning_content`` or ``reasoning``), tool-call fragments keyed by index, usage,
the finish reason and in-band errors. ``[DONE]`` is the terminator: a stream without it is truncated.
Embeddings go to ``/embeddings``, token arrays and base64 included.
"""

from __future__ import annotations

import httpx
import msgspec
from msgspec import Struct

from providers._errors import in_band_error
from providers._http import HttpProvider, ModelOnce, StreamMapper, decode_json
from providers._sse import SSEDecoder
from providers.base import (
    Deployment,
    Event,
    Finish,
    FinishReason,
    Original,
    ReasoningDelta,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    new_tool_call_id,
)
from providers.embeddings import Embedded, EmbeddingRequest, embedded
from providers.request import (
    JSON_ENCODER,
    ChatRequest,
    Message,
    ResponseFormat,
    StopSequences,
    Tool,
    ToolChoice,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
FINISH_REASONS: dict[str | None, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class StreamOptions(Struct, frozen=True):
    include_usage: bool


class ChatBody(Struct, omit_defaults=True):
    """Fields without defaults are always sent: ``omit_defaults`` drops any field equal to its default."""

    model: str
    messages: list[Message]
    stream: bool
    stream_options: StreamOptions
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: StopSequences | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    seed: int | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None


def chat_body(request: ChatRequest, model: str) -> ChatBody:
    return ChatBody(
        model=model,
        messages=request.messages,
        stream=True,
        stream_options=StreamOptions(include_usage=True),
        max_tokens=request.max_tokens,
        max_completion_tokens=request.max_completion_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        tools=request.function_tools or None,
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        seed=request.seed,
        user=request.user,
        response_format=request.response_format,
        reasoning_effort=request.reasoning_effort,
    )


# The stream, as wire structs holding only the fields read.
class FunctionDelta(Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCallFragment(Struct):
    index: int = 0
    id: str | None = None
    function: FunctionDelta | None = None


class Delta(Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallFragment] | None = None


class Choice(Struct):
    index: int = 0
    delta: Delta | None = None
    finish_reason: str | None = None


class PromptDetails(Struct):
    cached_tokens: int | None = None


class CompletionDetails(Struct):
    reasoning_tokens: int | None = None


class WireUsage(Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None


class WireError(Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class Chunk(Struct):
    choices: list[Choice] | None = None
    usage: WireUsage | None = None
    error: WireError | None = None
    object: str | None = None  # vLLM reports errors as {"object": "error", "message", "type", "code"}
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class FirstChunk(Chunk):
    model: str | None = None  # read from the first chunk only: every chunk repeats it


CHUNK_DECODER = msgspec.json.Decoder(Chunk)
FIRST_CHUNK_DECODER = msgspec.json.Decoder(FirstChunk)


class ChatStream:
    """Reads a Chat Completions SSE stream into canonical events; ``Finish`` waits for ``[DONE]``, or
    for the clean end of a body that said its finish reason: several compatible servers never send
    ``[DONE]``, and their answers are whole. A body that ends without a finish reason is truncated."""

    def __init__(self, provider: str):
        self.provider = provider
        self.sse = SSEDecoder()
        self.tool_index: dict[int, int] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.done = False
        self.chunks: ModelOnce[Chunk] = ModelOnce(FIRST_CHUNK_DECODER, CHUNK_DECODER)

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        for sse in self.sse.feed(chunk):
            if not self.done:
                self.read(sse.data, events)
        return events

    def end(self) -> list[Event]:
        self.sse.flush()
        if self.done:
            return []
        if self.finish_reason is None:
            raise StreamTruncatedError(
                f"{self.provider}'s stream ended without a finish reason or its [DONE] marker, so the answer is "
                "incomplete. Retry the request."
            )
        self.done = True
        return self.closing()

    def read(self, data: str, events: list[Event]) -> None:
        if data[:1] != "{" and data.strip() == "[DONE]":
            self.done = True
            events.extend(self.closing())
            return
        chunk = self.chunks.decode(data, self.provider, events)
        if chunk.error is not None:
            raise in_band_error(self.provider, chunk.error.message, chunk.error.code or chunk.error.type)
        if chunk.object == "error":
            raise in_band_error(self.provider, chunk.message, chunk.code or chunk.type)
        for choice in chunk.choices or ():
            if choice.index == 0:
                self.read_choice(choice, events)
        if chunk.usage is not None:
            self.usage = usage_of(chunk.usage)

    def read_choice(self, choice: Choice, events: list[Event]) -> None:
        delta = choice.delta
        if delta is not None:
            reasoning = delta.reasoning_content or delta.reasoning
            if reasoning:
                events.append(ReasoningDelta(reasoning))
            if delta.content:
                events.append(TextDelta(delta.content))
            if delta.refusal:
                events.append(TextDelta(delta.refusal))
            for fragment in delta.tool_calls or ():
                self.read_tool_call(fragment, events)
        if choice.finish_reason is not None:
            if choice.finish_reason == "error":
                raise in_band_error(self.provider, "the provider ended the answer with an error", None)
            self.finish_reason = choice.finish_reason

    def read_tool_call(self, fragment: ToolCallFragment, events: list[Event]) -> None:
        """Fragments are keyed by their index (which need not start at 0); id and name come once."""
        function = fragment.function or FunctionDelta()
        index = self.tool_index.get(fragment.index)
        if index is None:
            index = self.tool_index[fragment.index] = len(self.tool_index)
            events.append(ToolCallStart(index, fragment.id or new_tool_call_id(), function.name or ""))
        if function.arguments:
            events.append(ToolCallDelta(index, function.arguments))

    def closing(self) -> list[Event]:
        reason = FINISH_REASONS.get(self.finish_reason, "stop")
        if reason == "stop" and self.tool_index:
            reason = "tool_calls"  # some compatible servers say stop after calling tools
        return [*([self.usage] if self.usage else []), Finish(reason)]


def usage_of(usage: WireUsage) -> Usage:
    prompt, completion = usage.prompt_tokens_details, usage.completion_tokens_details
    return Usage(
        prompt_tokens=usage.prompt_tokens or 0,
        completion_tokens=usage.completion_tokens or 0,
        cached_tokens=(prompt.cached_tokens if prompt else None) or 0,
        reasoning_tokens=(completion.reasoning_tokens if completion else None) or 0,
    )


def with_fields(body: bytes, fields: dict[str, msgspec.Raw]) -> bytes:
    """A JSON object's bytes with more fields (none of them already in it) spliced in before its end."""
    if not fields:
        return body
    return b"%s,%s" % (body[:-1], JSON_ENCODER.encode(fields)[1:])


class OpenAIProvider(HttpProvider):
    """OpenAI, or any server that speaks its Chat Completions API, over one pooled client.

    A Chat Completions client's fields the gateway does not know (``logprobs``, ``prediction``,
    ``service_tier``, ``web_search_options``, future ones) go upstream beside the body it builds.
    """

    default_base_url = DEFAULT_BASE_URL
    dialect: str | None = "openai"

    def build_request(self, request: ChatRequest, deployment: Deployment) -> httpx.Request:
        return self.post(f"{self.base_url}/chat/completions", JSON_ENCODER.encode(chat_body(request, deployment.model)))

    def same_dialect(
        self, request: ChatRequest, deployment: Deployment, original: Original
    ) -> tuple[httpx.Request, StreamMapper]:
        body = with_fields(JSON_ENCODER.encode(chat_body(request, deployment.model)), original.fields)
        return self.post(f"{self.base_url}/chat/completions", body), ChatStream(self.name)

    def mapper(self, request: ChatRequest, deployment: Deployment) -> StreamMapper:
        return ChatStream(self.name)

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embedded:
        body = EmbeddingsBody(
            deployment.model, request.input, request.encoding_format, request.dimensions, request.user
        )
        raw = await self.fetch(f"{self.base_url}/embeddings", JSON_ENCODER.encode(body), deployment)
        answer = decode_json(EMBEDDINGS_DECODER, raw, self.name)
        vectors = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
        return embedded(vectors, request, answer.usage.prompt_tokens if answer.usage else 0, self.name)


class EmbeddingsBody(Struct, omit_defaults=True):
    model: str
    input: list[str] | list[list[int]]
    encoding_format: str  # base64 only when the client wants it: some compatible servers know only float
    dimensions: int | None = None
    user: str | None = None


class EmbeddingItem(Struct):
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(Struct):
    prompt_tokens: int = 0


class EmbeddingList(Struct):
    data: list[EmbeddingItem]
    usage: EmbeddingsUsage | None = None


EMBEDDINGS_DECODER = msgspec.json.Decoder(EmbeddingList)
