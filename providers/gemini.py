"""Google Gemini: ``streamGenerateContent?alt=sse`` for streams, ``generateContent`` for whole answers.

The request: roles become ``user`` and ``model``; system text goes to ``systemInstruction``; images
go inline; tool results are ``functionResponse`` parts named after the call they answer; reasoning
effort becomes a thinking budget.

The stream, and the wire structs both sides share, are the private ``_gemini_events``' job.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from providers._errors import VendorError
from providers._gemini_events import (
    Camel,
    Content,
    FunctionCall,
    FunctionResponse,
    GeminiStream,
    InlineData,
    Part,
    gemini_error,
)
from providers._http import HttpProvider, StreamMapper, decode_json
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
)
from providers.embeddings import Embedded, EmbeddingRequest, embedded, estimate_tokens, texts_only
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
GEMINI_FILE_TYPES = ("application/pdf", "text/plain", "text/html", "text/csv", "text/markdown")
# Gemini 3 rejects a replayed function call without the thought signature it came with, which a
# stateless gateway does not keep; Google documents this value for history it did not record.
REPLAY_SIGNATURE = "skip_thought_signature_validator"
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}


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

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embedded:
        """``batchEmbedContents``: one request per input. Gemini counts no tokens, so they are estimated."""
        model = f"models/{deployment.model}"
        texts = texts_only(request, self.name)
        body = {"requests": [embed_content(model, text, request.dimensions) for text in texts]}
        url = f"{self.base_url}/v1beta/{model}:batchEmbedContents"
        answer = decode_json(BATCH_DECODER, await self.fetch(url, JSON_ENCODER.encode(body), deployment), self.name)
        return embedded([item.values for item in answer.embeddings], request, estimate_tokens(request), self.name)


def embed_content(model: str, text: str, dimensions: int | None) -> dict[str, Any]:
    content = {"model": model, "content": {"parts": [{"text": text}]}}
    return {**content, "outputDimensionality": dimensions} if dimensions else content


class ContentEmbedding(Camel):
    values: list[float]


class BatchEmbeddings(Camel):
    embeddings: list[ContentEmbedding]


BATCH_DECODER = msgspec.json.Decoder(BatchEmbeddings)
