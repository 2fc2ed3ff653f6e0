"""The canonical chat request: OpenAI's Chat Completions body, decoded by msgspec into typed structs.

Every constraint here is mirrored in ``openapi.yaml``; the contract test fails when they drift.
Unknown fields are ignored (msgspec's default), so clients that send newer OpenAI fields still work.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

NonEmptyStr = Annotated[str, Meta(min_length=1)]


class TokenCount(int):
    """A whole number of tokens, 1 to 2**31 - 1."""


class Int64(int):
    """A whole number in int64's range."""


# JSON Schema counts 5.0 as an integer, and so do lenient clients, so whole numbers may arrive as
# floats; msgspec's strict int rejects them, so these two types are decoded by ``whole_number``.
WHOLE_NUMBER_RANGES: dict[type, tuple[int, int]] = {TokenCount: (1, INT32_MAX), Int64: (INT64_MIN, INT64_MAX)}


def whole_number(kind: type, value: Any) -> Any:
    if kind not in WHOLE_NUMBER_RANGES:
        raise NotImplementedError
    low, high = WHOLE_NUMBER_RANGES[kind]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Expected a whole number from {low} to {high}, got `{type(value).__name__}`")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"Expected a whole number from {low} to {high}, got the fraction {value}")
    if not low <= value <= high:
        raise ValueError(f"Expected a whole number from {low} to {high}, got {value:.0f}")
    return kind(value)


class TextPart(Struct, tag="text", tag_field="type", omit_defaults=True):
    text: str


class RefusalPart(Struct, tag="refusal", tag_field="type", omit_defaults=True):
    refusal: str


class ImageUrl(Struct, omit_defaults=True):
    url: NonEmptyStr
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Struct, tag="image_url", tag_field="type", omit_defaults=True):
    image_url: ImageUrl


class FileData(Struct, omit_defaults=True):
    file_data: NonEmptyStr | msgspec.UnsetType = msgspec.UNSET  # a data: URI (data:application/pdf;base64,...)
    file_id: NonEmptyStr | msgspec.UnsetType = msgspec.UNSET
    filename: str | None = None

    def __post_init__(self) -> None:
        if not self.file_data and not self.file_id:
            raise ValueError("a file needs its `file_data` (a data: URI) or a `file_id`")


class FilePart(Struct, tag="file", tag_field="type", omit_defaults=True):
    """A document (a PDF) for the model to read, as OpenAI's Chat Completions take it."""

    file: FileData


UserPart = TextPart | ImagePart | FilePart
UserContent = str | list[UserPart]
TextContent = str | list[TextPart]


class FunctionCall(Struct):
    name: str
    arguments: str


class ToolCall(Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class SystemMessage(Struct, tag="system", tag_field="role", omit_defaults=True):
    content: TextContent
    name: str | None = None


class DeveloperMessage(Struct, tag="developer", tag_field="role", omit_defaults=True):
    content: TextContent
    name: str | None = None


class UserMessage(Struct, tag="user", tag_field="role", omit_defaults=True):
    content: UserContent
    name: str | None = None


class AssistantMessage(Struct, tag="assistant", tag_field="role", omit_defaults=True):
    content: str | list[TextPart | RefusalPart] | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    name: str | None = None


class ToolMessage(Struct, tag="tool", tag_field="role", omit_defaults=True):
    content: TextContent
    tool_call_id: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDefinition(Struct, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct, tag="function", tag_field="type"):
    function: FunctionDefinition


class McpTools(Struct, tag="mcp", tag_field="type", forbid_unknown_fields=True):
    """The gateway's extension: offer the model the tools of a configured MCP server, all or some."""

    server: NonEmptyStr
    allowed_tools: list[NonEmptyStr] | None = None


class ToolChoiceFunctionName(Struct):
    name: NonEmptyStr


class ToolChoiceFunction(Struct):
    type: Literal["function"]
    function: ToolChoiceFunctionName


class ResponseFormatText(Struct, tag="text", tag_field="type", omit_defaults=True):
    pass


class ResponseFormatJsonObject(Struct, tag="json_object", tag_field="type", omit_defaults=True):
    pass


class JsonSchemaFormat(Struct, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormatJsonSchema(Struct, tag="json_schema", tag_field="type", omit_defaults=True):
    json_schema: JsonSchemaFormat


ResponseFormat = ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema


class StreamOptions(Struct):
    include_usage: bool = False


StopSequences = str | list[str]
ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction


class ChatRequest(Struct):
    model: NonEmptyStr
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop: StopSequences | None = None
    tools: list[Tool | McpTools] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Checked by the HTTP side so that n > 1 gets a message saying why, not a bare range error.
    n: Int64 | None = None
    seed: Int64 | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    metadata: dict[str, str] | None = None
    # The gateway's extension: a stored conversation whose history goes upstream before these messages.
    conversation_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None

    @property
    def function_tools(self) -> list[Tool]:
        """The tools a vendor sees: MCP servers are expanded into functions by the gateway first."""
        return [tool for tool in self.tools or () if isinstance(tool, Tool)]

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_limit(self) -> int | None:
        """The tighter of ``max_completion_tokens`` and the older ``max_tokens``."""
        limits = [v for v in (self.max_completion_tokens, self.max_tokens) if v is not None]
        return min(limits) if limits else None


def message_text(content: str | list[Any] | None) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text for part in content if isinstance(part, TextPart))


def message_role(message: Message) -> str:
    return type(message).__name__.removesuffix("Message").lower()


def encode_whole_number(value: Any) -> Any:
    if isinstance(value, TokenCount | Int64):
        return int(value)
    raise NotImplementedError


CHAT_REQUEST_DECODER = msgspec.json.Decoder(ChatRequest, dec_hook=whole_number)
CHAT_FIELDS = frozenset(ChatRequest.__struct_fields__)
# A body's top-level fields with their values undecoded, for what goes upstream as the client sent it.
FIELDS_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
# For every body built from a request: the whole-number types above go back out as plain integers.
JSON_ENCODER = msgspec.json.Encoder(enc_hook=encode_whole_number)


# No tokenizer ships with the gateway: about four characters of JSON per token, plus a few for framing.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_tokens(message: Message) -> int:
    return len(JSON_ENCODER.encode(message)) // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE


def estimate_prompt_tokens(chat: ChatRequest) -> int:
    """About four characters of JSON per token, as the conversation window estimates; tools included."""
    tools = len(JSON_ENCODER.encode(chat.function_tools)) // CHARS_PER_TOKEN if chat.tools else 0
    return sum(estimate_tokens(message) for message in chat.messages) + tools
