"""Anthropic's Messages request as msgspec decodes it; ``translate`` makes the canonical request of it.

Fields the gateway does not know are ignored here and kept in the body as it came, for an upstream
that speaks Messages itself; so are content blocks it does not know (``OtherBlock``).
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
import orjson
from msgspec import Meta, Struct

from providers.request import Int64, NonEmptyStr, TokenCount, whole_number

R = TypeVar("R", bound="MessagesRequest")


class TextBlock(Struct, tag="text", tag_field="type"):
    text: str


class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: NonEmptyStr
    data: NonEmptyStr


class UrlSource(Struct, tag="url", tag_field="type"):
    url: NonEmptyStr


class FileSource(Struct, tag="file", tag_field="type"):
    file_id: NonEmptyStr


class ImageBlock(Struct, tag="image", tag_field="type"):
    source: Base64Source | UrlSource | FileSource


class TextSource(Struct, tag="text", tag_field="type"):
    data: str
    media_type: str = "text/plain"


class ContentSource(Struct, tag="content", tag_field="type"):
    content: str | list[TextBlock | ImageBlock]


class DocumentBlock(Struct, tag="document", tag_field="type"):
    source: Base64Source | UrlSource | TextSource | ContentSource | FileSource
    title: str | None = None
    context: str | None = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type"):
    id: NonEmptyStr
    name: NonEmptyStr
    input: dict[str, Any] = {}


class ToolResultBlock(Struct, tag="tool_result", tag_field="type"):
    tool_use_id: NonEmptyStr
    content: str | list[TextBlock | ImageBlock | DocumentBlock] = ""
    is_error: bool = False


class ThinkingBlock(Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, tag="redacted_thinking", tag_field="type"):
    data: str


class OtherBlock(Struct, tag="gateway.other", tag_field="type"):
    """A block this gateway does not know (a server tool's result, a future type): it goes on only to
    an upstream that speaks Messages itself. ``kind`` is its type; ``why`` what decoding it said."""

    kind: str
    why: str


Block = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | OtherBlock
)


class InputMessage(Struct):
    role: Literal["user", "assistant", "system"]  # "system" mid-conversation, as Claude Code sends it
    content: str | list[Block]


class CustomTool(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None


class ToolChoiceSpec(Struct):
    type: Literal["auto", "any", "tool", "none"]
    name: NonEmptyStr | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(Struct):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: TokenCount | None = None


class OutputConfig(Struct):
    effort: Literal["low", "medium", "high", "max"] | None = None


class Metadata(Struct):
    user_id: str | None = None


class MessagesRequest(Struct, kw_only=True):
    model: NonEmptyStr
    max_tokens: TokenCount
    messages: Annotated[list[InputMessage], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[dict[str, Any]] | None = None  # custom tools, or the gateway's {"type": "mcp", ...}
    tool_choice: ToolChoiceSpec | None = None
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Int64 | None = None  # not passed on: the canonical request has no top_k
    metadata: Metadata | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    stream: bool | None = None
    conversation_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class CountTokensRequest(MessagesRequest, kw_only=True):
    """``POST /v1/messages/count_tokens`` takes a Messages request without ``max_tokens``."""

    max_tokens: TokenCount | None = None  # type: ignore[assignment]


class MessagesDecoder(Generic[R]):
    """Decodes a Messages body; a content block it cannot decode becomes an ``OtherBlock`` (so that
    an upstream that speaks Messages still gets it) where the rest of the body is sound."""

    def __init__(self, kind: type[R]):
        self.kind = kind
        self.decoder = msgspec.json.Decoder(kind, dec_hook=whole_number)

    def decode(self, body: bytes) -> R:
        try:
            return self.decoder.decode(body)
        except msgspec.ValidationError:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None  # msgspec validates as it parses: a body can be refused before its end is read
            if not isinstance(data, dict) or not set_aside_unknown_blocks(data):
                raise
            return msgspec.convert(data, self.kind, dec_hook=whole_number)


def set_aside_unknown_blocks(body: dict[str, Any]) -> bool:
    """Turns each content block that does not decode into an ``OtherBlock``; True if there was one."""
    found = False
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for position, block in enumerate(content):
            try:
                msgspec.convert(block, Block, dec_hook=whole_number)
            except msgspec.ValidationError as exc:
                kind = block.get("type") if isinstance(block, dict) else None
                content[position] = {"type": "gateway.other", "kind": str(kind)[:60], "why": str(exc)[:200]}
                found = True
    return found


MESSAGES_REQUEST_DECODER = MessagesDecoder(MessagesRequest)
COUNT_TOKENS_DECODER = MessagesDecoder(CountTokensRequest)
