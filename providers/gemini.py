"""Google Gemini: ``streamGenerateContent?alt=sse`` for streams, ``generateContent`` for whole answers.

The request: roles become ``user`` and ``model``; system text goes to ``systemInstruction``; images
go inline; tool results are ``functionResponse`` parts named after the call they answer; reasoning
effort becomes a thinking budget.

The stream: CRLF-framed SSE with no sentinel; the chunk with ``finishReason`` ends it, and a bare
``{"error"}`` object can arrive inside a 200 stream. Tool calls arrive whole, with object arguments
and (on 2.x) no id, so the gateway makes one.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from msgspec import Struct

from providers._http import (
    HttpProvider,
    StreamMapper,
    VendorError,
    common_error,
    decode_json,
    in_band_error,
    protocol_error,
    to_float,
)
from providers._sse import SSEDecoder
from providers._translate import (
    inline_file,
    inline_image,
    json_object_or_wrapped,
    system_text,
    tool_arguments,
    tool_name_for,
    tool_names,
    turns,
)
from providers.base import (
    Deployment,
    Event,
    Finish,
    FinishReason,
    ProviderError,
    ReasoningDelta,
    StreamTruncatedError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    new_tool_call_id,
)
from providers.request import (
    JSON_ENCODER,
    AssistantMessage,
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    Tool,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
    UserPart,
    message_text,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
MAX_WHOLE_BODY = 32 * 1024 * 1024
# Gemini 3 rejects a replayed function call without the thought signature it came with, which a
# stateless gateway does not keep; Google documents this value for history it did not record.
GEMINI_FILE_TYPES = ("application/pdf", "text/plain", "text/html", "text/csv", "text/markdown")
REPLAY_SIGNATURE = "skip_thought_signature_validator"
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}


class Camel(Struct, rename="camel", omit_defaults=True):
    """Gemini's JSON is camelCase; the fields here are not."""


class InlineData(Camel):
    mime_type: str
    data: str


class FunctionCall(Camel):
    name: str | None = None
    args: Any = None
    id: str | None = None  # Gemini 3 names its calls; 2.x does not, so the gateway makes an id


class FunctionResponse(Camel):
    name: str
    response: Any


class Part(Camel):
    text: str | None = None
    thought: bool | None = None  # in the stream: this text is reasoning
    inline_data: InlineData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought_signature: str | None = None


class Content(Camel):
    parts: list[Part] = []
    role: str | None = None


class FunctionDeclaration(Camel):
    name: str
    description: str | None = None
    parameters_json_schema: dict[str, Any] | None = None


class GeminiTool(Camel):
    function_declarations: list[FunctionDeclaration]


class FunctionCallingConfig(Camel):
    mode: str
    allowed_function_names: list[str] | None = None


class ToolConfig(Camel):
    function_calling_config: FunctionCallingConfig


class ThinkingConfig(Camel):
    thinking_budget: int
    include_thoughts: bool


class GenerationConfig(Camel):
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None
    seed: int | None = None
    response_mime_type: str | None = None
    response_json_schema: dict[str, Any] | None = None
    thinking_config: ThinkingConfig | None = None


class GenerateBody(Camel):
    contents: list[Content]
    system_instruction: Content | None = None
    tools: list[GeminiTool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None


def generate_body(request: ChatRequest) -> GenerateBody:
    system = system_text(request)
    tools = request.function_tools
    return GenerateBody(
        contents=contents(turns(request), tool_names(request)),
        system_instruction=Content([Part(text=system)]) if system else None,
        tools=[GeminiTool([declaration(tool) for tool in tools])] if tools else None,
        tool_config=tool_config(request),
        generation_config=generation_config(request),
    )


def declaration(tool: Tool) -> FunctionDeclaration:
    return FunctionDeclaration(tool.function.name, tool.function.description, tool.function.parameters)


def contents(messages: list[Message], names: dict[str, str]) -> list[Content]:
    """Turns of ``user`` and ``model``; consecutive tool results share one turn, as Gemini wants."""
    result: list[Content] = []
    for message in messages:
        role = "model" if isinstance(message, AssistantMessage) else "user"
        parts = parts_of(message, names)
        if not parts:
            continue
        if result and result[-1].role == role and isinstance(message, ToolMessage):
            result[-1].parts.extend(parts)
        else:
            result.append(Content(parts, role))
    return result


def parts_of(message: Message, names: dict[str, str]) -> list[Part]:
    match message:
        case UserMessage(content=str() as text):
            return [Part(text=text)] if text else []
        case UserMessage(content=list() as items):
            return [user_part(item) for item in items]
        case AssistantMessage(tool_calls=calls):
            text = message_text(message.content)
            called = [
                Part(function_call=FunctionCall(c.function.name, tool_arguments(c)), thought_signature=REPLAY_SIGNATURE)
                for c in calls or ()
            ]
            return ([Part(text=text)] if text else []) + called
        case ToolMessage(tool_call_id=call_id):
            name = tool_name_for(names, call_id, "Gemini")
            response = json_object_or_wrapped(message_text(message.content))
            return [Part(function_response=FunctionResponse(name, response))]
    return []


def user_part(part: UserPart) -> Part:
    if isinstance(part, ImagePart):
        return Part(inline_data=InlineData(*inline_image(part, "Gemini")))
    if isinstance(part, FilePart):
        return Part(inline_data=InlineData(*inline_file(part, "Gemini", GEMINI_FILE_TYPES)))
    return Part(text=part.text)


def tool_config(request: ChatRequest) -> ToolConfig | None:
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        return ToolConfig(FunctionCallingConfig("ANY", [choice.function.name]))
    modes = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
    return ToolConfig(FunctionCallingConfig(modes[choice])) if choice else None


def generation_config(request: ChatRequest) -> GenerationConfig:
    stop, budget = request.stop, THINKING_BUDGETS.get(request.reasoning_effort or "")
    mime, schema = None, None
    match request.response_format:
        case ResponseFormatJsonSchema(json_schema=json_schema):
            mime, schema = "application/json", json_schema.schema or {}
        case ResponseFormatJsonObject():
            mime = "application/json"
    return GenerationConfig(
        max_output_tokens=request.token_limit,
        temperature=request.temperature,
        top_p=request.top_p,
        stop_sequences=[stop] if isinstance(stop, str) else stop,
        seed=request.seed,
        response_mime_type=mime,
        response_json_schema=schema,
        thinking_config=None if budget is None else ThinkingConfig(budget, include_thoughts=budget > 0),
    )


# The stream, as wire structs holding only the fields read (its parts are the request's Part).
class Candidate(Camel):
    content: Content | None = None
    finish_reason: str | None = None


class UsageMetadata(Camel):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None


class PromptFeedback(Camel):
    block_reason: str | None = None


class ErrorDetail(Camel):
    reason: str | None = None
    retry_delay: str | None = None


class WireError(Camel):
    """In a 200 stream, or as the whole body of an error status."""

    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[ErrorDetail] | None = None


class Chunk(Camel):
    candidates: list[Candidate] | None = None
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: PromptFeedback | None = None
    error: WireError | None = None


CHUNK_DECODER = msgspec.json.Decoder(Chunk)
SAFETY = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
SAFETY |= {"IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}  # the same refusals, of an image
FAILED = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}


class GeminiStream:
    """Reads Gemini's SSE stream (or, with ``whole``, one generateContent body) into canonical events.

    A body that starts with ``{`` or ``[`` instead of ``data:`` is read whole: Gemini sends errors
    that way, sometimes pretty-printed over several lines.
    """

    def __init__(self, provider: str, *, whole: bool = False):
        self.provider = provider
        self.sse = SSEDecoder()
        self.whole = whole
        self.started = False
        self.body = bytearray()
        self.tool_calls = 0
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        if not self.started and chunk.strip():
            self.started = True
            self.whole = self.whole or chunk.lstrip()[:1] in (b"{", b"[")
        if self.whole:
            self.body += chunk
            if len(self.body) > MAX_WHOLE_BODY:
                raise protocol_error(self.provider, f"a body larger than {MAX_WHOLE_BODY} bytes")
            return []
        events: list[Event] = []
        for sse in self.sse.feed(chunk):
            self.read(decode_json(CHUNK_DECODER, sse.data, self.provider), events)
        return events

    def end(self) -> list[Event]:
        events: list[Event] = []
        if self.whole:
            body = bytes(self.body).strip()
            chunk = decode_json(CHUNK_DECODER, body[1:-1] if body.startswith(b"[") else body, self.provider)
            self.read(chunk, events)
        self.sse.flush()
        if self.finish_reason is None:
            raise StreamTruncatedError(
                f"{self.provider}'s stream ended without a finishReason, so the answer is incomplete. "
                "Retry the request."
            )
        return [*events, *([self.usage] if self.usage else []), Finish(self.finish())]

    def read(self, chunk: Chunk, events: list[Event]) -> None:
        if chunk.error is not None:
            error = chunk.error
            raise in_band_error(self.provider, error.message, error.code or error.status)
        if chunk.usage_metadata is not None:
            self.usage = usage_of(chunk.usage_metadata)
        if not chunk.candidates:
            feedback = chunk.prompt_feedback
            if feedback is not None and feedback.block_reason:
                self.finish_reason = "SAFETY"  # the prompt itself was blocked
            return
        candidate = chunk.candidates[0]
        for part in (candidate.content.parts if candidate.content else None) or ():
            self.read_part(part, events)
        if candidate.finish_reason:
            self.finish_reason = candidate.finish_reason

    def read_part(self, part: Part, events: list[Event]) -> None:
        if part.function_call is not None:
            call, index = part.function_call, self.tool_calls
            self.tool_calls += 1
            events.append(ToolCallStart(index, call.id or new_tool_call_id(), call.name or ""))
            events.append(ToolCallDelta(index, JSON_ENCODER.encode(call.args or {}).decode()))
        elif part.text:
            events.append(ReasoningDelta(part.text) if part.thought else TextDelta(part.text))

    def finish(self) -> FinishReason:
        reason = self.finish_reason
        if reason in FAILED:
            raise ProviderError(f"{self.provider} ended the answer with {reason}; retry the request.")
        if reason == "MAX_TOKENS":
            return "length"
        if reason in SAFETY:
            return "content_filter"
        return "tool_calls" if self.tool_calls else "stop"


def usage_of(usage: UsageMetadata) -> Usage:
    """Gemini counts thoughts apart from candidates; OpenAI's completion tokens include them."""
    thoughts = usage.thoughts_token_count or 0
    return Usage(
        prompt_tokens=(usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
        completion_tokens=(usage.candidates_token_count or 0) + thoughts,
        cached_tokens=usage.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )


def gemini_error(body: bytes) -> VendorError:
    """The common message, plus Gemini's retryDelay and its way of refusing a bad key with a 400."""
    common = common_error(body)
    try:
        error = CHUNK_DECODER.decode(body.strip().strip(b"[]")).error
    except msgspec.MsgspecError:
        return common
    details = (error.details if error else None) or []
    delay = next((d.retry_delay for d in details if d.retry_delay), None)
    auth = any(d.reason == "API_KEY_INVALID" for d in details)
    seconds = to_float(delay.rstrip("s")) if delay else None
    retry_after = max(seconds, 0.0) if seconds is not None else None
    return VendorError(common.message, retry_after, auth)


class GeminiProvider(HttpProvider):
    default_base_url = DEFAULT_BASE_URL
    accept = "*/*"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}

    def build_request(self, request: ChatRequest, deployment: Deployment) -> httpx.Request:
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        url = f"{self.base_url}/v1beta/models/{deployment.model}:{method}"
        return self.post(url, JSON_ENCODER.encode(generate_body(request)))

    def mapper(self, request: ChatRequest, deployment: Deployment) -> StreamMapper:
        return GeminiStream(self.name, whole=not request.stream)

    def read_error(self, body: bytes) -> VendorError:
        return gemini_error(body)
