"""Anthropic's Messages API (``POST /v1/messages``) with the ``anthropic-version`` header.

System and developer text goes to the top-level ``system``; tool calls and results become
``tool_use`` and ``tool_result`` blocks; ``max_tokens`` is required, so a default is sent. The stream
is typed events ending in ``message_stop``; ``event: error`` can arrive mid-stream with HTTP 200.
Reading it is the private ``_anthropic_events``' job; a Messages client's own request goes up as it
came (``same_dialect``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
from msgspec import Struct

from providers._anthropic_events import AnthropicAnswer, AnthropicStream
from providers._http import HttpProvider, StreamMapper, decode_json, open_stream
from providers._translate import DATA_URI, inline_file, system_text, tool_arguments, turns
from providers.base import (
    Deployment,
    InvalidRequestError,
    Original,
)
from providers.request import (
    JSON_ENCODER,
    AssistantMessage,
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    ResponseFormatText,
    TextPart,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
    message_text,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}


class TextBlock(Struct, tag="text", tag_field="type"):
    text: str


class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class UrlSource(Struct, tag="url", tag_field="type"):
    url: str


class ImageBlock(Struct, tag="image", tag_field="type"):
    source: Base64Source | UrlSource


class DocumentBlock(Struct, tag="document", tag_field="type", omit_defaults=True):
    source: Base64Source
    title: str | None = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: Any


class ToolResultBlock(Struct, tag="tool_result", tag_field="type"):
    tool_use_id: str
    content: str


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock


class Turn(Struct):
    role: str
    content: list[Block]


class Tool(Struct, omit_defaults=True):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None


class ToolChoice(Struct, omit_defaults=True):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(Struct):
    budget_tokens: int
    type: str = "enabled"


class Metadata(Struct):
    user_id: str


class MessagesBody(Struct, omit_defaults=True):
    model: str
    max_tokens: int
    messages: list[Turn]
    stream: bool
    system: str | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    metadata: Metadata | None = None


def messages_body(request: ChatRequest, model: str) -> MessagesBody:
    if request.response_format is not None and not isinstance(request.response_format, ResponseFormatText):
        raise InvalidRequestError(
            "Anthropic has no JSON response format; leave out response_format and ask for JSON in the prompt.",
            param="response_format",
        )
    max_tokens, thinking = token_budget(request)
    stop = request.stop
    return MessagesBody(
        model=model,
        max_tokens=max_tokens,
        messages=conversation(turns(request)),
        stream=True,
        system=system_text(request),
        stop_sequences=[stop] if isinstance(stop, str) else stop,
        temperature=request.temperature,
        top_p=request.top_p,
        tools=[
            Tool(t.function.name, t.function.parameters or {"type": "object"}, t.function.description)
            for t in request.function_tools
        ]
        if request.function_tools
        else None,
        tool_choice=tool_choice(request),
        thinking=thinking,
        metadata=Metadata(request.user) if request.user else None,
    )


def token_budget(request: ChatRequest) -> tuple[int, Thinking | None]:
    """``max_tokens`` (required by Anthropic) and the thinking budget, which must stay below it."""
    budget = THINKING_BUDGETS.get(request.reasoning_effort or "")
    limit = request.token_limit
    if budget is None:
        return limit or DEFAULT_MAX_TOKENS, None
    if limit is None:
        return budget + DEFAULT_MAX_TOKENS, Thinking(budget)
    budget = min(budget, limit // 2)
    return limit, Thinking(budget) if budget >= 1024 else None


def tool_choice(request: ChatRequest) -> ToolChoice | None:
    choice, parallel = request.tool_choice, request.parallel_tool_calls
    single = True if parallel is False else None
    if isinstance(choice, ToolChoiceFunction):
        return ToolChoice("tool", choice.function.name, single)
    if choice == "none":
        return ToolChoice("none")
    if choice == "required":
        return ToolChoice("any", disable_parallel_tool_use=single)
    if choice == "auto" or single:
        return ToolChoice("auto", disable_parallel_tool_use=single)
    return None


def conversation(messages: list[Message]) -> list[Turn]:
    """Turns with blocks; consecutive turns of one role merge, so parallel tool results share one user turn."""
    result: list[Turn] = []
    for message in messages:
        role = "assistant" if isinstance(message, AssistantMessage) else "user"
        blocks = blocks_of(message)
        if not blocks:
            continue
        if result and result[-1].role == role:
            result[-1].content.extend(blocks)
        else:
            result.append(Turn(role, blocks))
    return result


def blocks_of(message: Message) -> list[Block]:
    match message:
        case UserMessage(content=str() as text):
            return [TextBlock(text)] if text else []
        case UserMessage(content=list() as parts):
            return [user_block(part) for part in parts]
        case AssistantMessage(tool_calls=calls):
            text = message_text(message.content)
            uses: list[Block] = [ToolUseBlock(c.id, c.function.name, tool_arguments(c)) for c in calls or ()]
            return ([TextBlock(text)] if text else []) + uses
        case ToolMessage(tool_call_id=call_id):
            return [ToolResultBlock(call_id, message_text(message.content))]
    return []


def user_block(part: TextPart | ImagePart | FilePart) -> Block:
    if isinstance(part, ImagePart):
        return image_block(part)
    if isinstance(part, FilePart):
        return DocumentBlock(Base64Source(*inline_file(part, "Anthropic")), part.file.filename)
    return TextBlock(part.text)


def image_block(part: ImagePart) -> ImageBlock:
    match = DATA_URI.fullmatch(part.image_url.url)
    if match is None:
        return ImageBlock(UrlSource(part.image_url.url))
    return ImageBlock(Base64Source(match["mime"], match["data"]))


# What Anthropic's count_tokens takes of a Messages request; the rest (max_tokens, stream...) it refuses.
COUNTED_FIELDS = frozenset({"messages", "system", "tools", "tool_choice", "thinking", "cache_control", "mcp_servers"})
COUNTED_FIELDS |= {"context_management", "output_config", "output_format"}


class TokenCount(Struct):
    input_tokens: int


TOKEN_COUNT_DECODER = msgspec.json.Decoder(TokenCount)


class AnthropicProvider(HttpProvider):
    default_base_url = DEFAULT_BASE_URL
    dialect = "anthropic"
    prefill = True  # a final assistant message is continued, not answered: how a rescue asks it to go on

    def __init__(self, name: str, client: httpx.AsyncClient, **options: Any):
        super().__init__(name, client, **options)
        self.headers.setdefault("anthropic-version", API_VERSION)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def same_dialect(
        self, request: ChatRequest, deployment: Deployment, original: Original
    ) -> tuple[httpx.Request, StreamMapper]:
        """The client's body as it came, with its anthropic-beta and -version headers; the answer
        comes back as it is sent, streamed or whole as the client asked."""
        http_request = self.as_it_came(f"{self.base_url}/v1/messages", original, deployment, bool(request.stream))
        mapper = AnthropicStream(self.name, relay=True) if request.stream else AnthropicAnswer(self.name)
        return http_request, mapper

    def build_request(self, request: ChatRequest, deployment: Deployment) -> httpx.Request:
        return self.post(f"{self.base_url}/v1/messages", JSON_ENCODER.encode(messages_body(request, deployment.model)))

    def mapper(self, request: ChatRequest, deployment: Deployment) -> StreamMapper:
        return AnthropicStream(self.name)

    async def count_tokens(self, body: Mapping[str, Any], deployment: Deployment, beta: str | None) -> int:
        """Anthropic's own count of a Messages request as its client wrote it, with the model rewritten."""
        counted = {key: value for key, value in body.items() if key in COUNTED_FIELDS} | {"model": deployment.model}
        request = self.post(f"{self.base_url}/v1/messages/count_tokens", JSON_ENCODER.encode(counted))
        if beta:
            request.headers["anthropic-beta"] = beta
        async with open_stream(self.client, request, self.name, self.read_error) as response:
            answer = await response.aread()
        return decode_json(TOKEN_COUNT_DECODER, answer, self.name).input_tokens
