"""Anthropic's Messages request, decoded by msgspec and turned into the canonical chat request.

The system prompt becomes a system message; a user turn's ``tool_result`` blocks become tool
messages (before the rest of the turn, as the results answer the previous assistant turn); an
assistant turn's ``tool_use`` blocks become tool calls with their input as a JSON string. Thinking
blocks are dropped on the way (the canonical request has no place for their signatures), and a
thinking budget becomes a reasoning effort. What the canonical request cannot carry at all is a 400
that says so, never a silent drop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from app.errors import ApiError
from providers.request import (
    JSON_ENCODER,
    AssistantMessage,
    ChatRequest,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageUrl,
    Int64,
    McpTools,
    Message,
    NonEmptyStr,
    SystemMessage,
    TextPart,
    TokenCount,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
    ToolChoiceFunctionName,
    ToolMessage,
    UserMessage,
    whole_number,
)

# A thinking budget as the nearest reasoning effort, by the budget's upper bound in tokens.
Effort = Literal["low", "medium", "high"]
EFFORTS: tuple[tuple[int, Effort], ...] = ((1024, "low"), (8192, "medium"))


class TextBlock(Struct, tag="text", tag_field="type"):
    text: str


class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: NonEmptyStr
    data: NonEmptyStr


class UrlSource(Struct, tag="url", tag_field="type"):
    url: NonEmptyStr


class ImageBlock(Struct, tag="image", tag_field="type"):
    source: Base64Source | UrlSource


class DocumentBlock(Struct, tag="document", tag_field="type"):
    source: Any = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type"):
    id: NonEmptyStr
    name: NonEmptyStr
    input: dict[str, Any] = {}


class ToolResultBlock(Struct, tag="tool_result", tag_field="type"):
    tool_use_id: NonEmptyStr
    content: str | list[TextBlock | ImageBlock] = ""
    is_error: bool = False


class ThinkingBlock(Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, tag="redacted_thinking", tag_field="type"):
    data: str


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


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


MESSAGES_REQUEST_DECODER = msgspec.json.Decoder(MessagesRequest, dec_hook=whole_number)
COUNT_TOKENS_DECODER = msgspec.json.Decoder(CountTokensRequest, dec_hook=whole_number)


def chat_request(request: MessagesRequest) -> ChatRequest:
    """The canonical request for a Messages request."""
    choice, parallel = tool_choice(request.tool_choice)
    messages: list[Message] = [SystemMessage(system_text(request.system))] if request.system else []
    for message in request.messages:
        messages += TURNS[message.role](message.content)
    return ChatRequest(
        model=request.model,
        messages=messages,
        stream=request.stream,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_sequences,
        tools=tools(request.tools) if request.tools else None,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        user=request.metadata.user_id if request.metadata else None,
        reasoning_effort=effort(request.thinking, request.output_config),
        conversation_id=request.conversation_id,
    )


def system_text(system: str | list[TextBlock] | None) -> str:
    return system if isinstance(system, str) else "\n\n".join(block.text for block in system or ())


def user_turn(content: str | list[Block]) -> list[Message]:
    """Tool results first, as tool messages, then the turn's own text and images, if any."""
    if isinstance(content, str):
        return [UserMessage(content)]
    results: list[Message] = [tool_message(b) for b in content if isinstance(b, ToolResultBlock)]
    parts = [
        user_part(b) for b in content if not isinstance(b, ToolResultBlock | ThinkingBlock | RedactedThinkingBlock)
    ]
    return [*results, UserMessage(parts)] if parts or not results else results


def user_part(block: Block) -> TextPart | ImagePart:
    match block:
        case TextBlock(text=text):
            return TextPart(text)
        case ImageBlock(source=Base64Source(media_type=media_type, data=data)):
            return ImagePart(ImageUrl(f"data:{media_type};base64,{data}"))
        case ImageBlock(source=UrlSource(url=url)):
            return ImagePart(ImageUrl(url))
        case DocumentBlock():
            raise unsupported("a `document` block", "Send its text as a `text` block")
    raise unsupported(f"a block of type `{kind(block)}` in a user turn", "Send text, image and tool_result blocks")


def tool_message(block: ToolResultBlock) -> ToolMessage:
    if isinstance(block.content, str):
        text = block.content
    elif any(isinstance(part, ImageBlock) for part in block.content):
        raise unsupported("an image inside a `tool_result`", "Send the image in a user `image` block")
    else:
        text = "".join(part.text for part in block.content if isinstance(part, TextBlock))
    return ToolMessage(f"Error: {text}" if block.is_error else text, block.tool_use_id)


def assistant_turn(content: str | list[Block]) -> AssistantMessage:
    if isinstance(content, str):
        return AssistantMessage(content=content)
    for block in content:
        if not isinstance(block, TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock):
            raise unsupported(f"a block of type `{kind(block)}` in an assistant turn", "Send text and tool_use blocks")
    text = "".join(block.text for block in content if isinstance(block, TextBlock))
    calls = [
        ToolCall(block.id, FunctionCall(block.name, JSON_ENCODER.encode(block.input).decode()))
        for block in content
        if isinstance(block, ToolUseBlock)
    ]
    return AssistantMessage(content=text or None, tool_calls=calls or None)


def system_turn(content: str | list[Block]) -> list[Message]:
    if isinstance(content, str):
        return [SystemMessage(content)]
    if any(not isinstance(block, TextBlock) for block in content):
        raise unsupported("a non-text block in a system message", "Send system messages as text")
    return [SystemMessage(system_text([block for block in content if isinstance(block, TextBlock)]))]


def assistant_turns(content: str | list[Block]) -> list[Message]:
    return [assistant_turn(content)]


TURNS: dict[str, Callable[[str | list[Block]], list[Message]]] = {
    "user": user_turn,
    "assistant": assistant_turns,
    "system": system_turn,
}


def tools(entries: list[dict[str, Any]]) -> list[Tool | McpTools]:
    """Custom tools as functions; ``{"type": "mcp", "server": ...}`` as the gateway's MCP tools."""
    result: list[Tool | McpTools] = []
    for position, entry in enumerate(entries):
        kind = entry.get("type")
        try:
            if kind == "mcp":
                result.append(msgspec.convert(entry, McpTools))
                continue
            if kind not in (None, "custom"):
                raise unsupported(
                    f"the server tool {str(kind)[:60]!r}", "Offer it as a custom tool with an input_schema"
                )
            tool = msgspec.convert(entry, CustomTool)
        except msgspec.ValidationError as exc:
            raise ApiError(
                400,
                f"tools[{position}] is not a tool: {exc}. Give it a name and an input_schema.",
                code="invalid_value",
                param=f"tools[{position}]",
            ) from None
        result.append(Tool(FunctionDefinition(tool.name, tool.description, tool.input_schema)))
    return result


def tool_choice(choice: ToolChoiceSpec | None) -> tuple[ToolChoice | None, bool | None]:
    if choice is None:
        return None, None
    parallel = False if choice.disable_parallel_tool_use else None
    if choice.type == "tool":
        if choice.name is None:
            raise ApiError(
                400,
                "tool_choice of type `tool` needs the tool's `name`.",
                code="missing_field",
                param="tool_choice.name",
            )
        return ToolChoiceFunction("function", ToolChoiceFunctionName(choice.name)), parallel
    modes: dict[str, ToolChoice] = {"auto": "auto", "any": "required", "none": "none"}
    return modes[choice.type], parallel


def effort(thinking: ThinkingConfig | None, output: OutputConfig | None) -> Effort | None:
    """The client's own effort when it names one, else the nearest to its thinking budget."""
    if output is not None and output.effort is not None:
        return "high" if output.effort == "max" else output.effort
    if thinking is None or thinking.type == "disabled":
        return None
    budget = thinking.budget_tokens or 0
    if thinking.type == "adaptive" or not budget:
        return "medium"
    return next((name for limit, name in EFFORTS if budget <= limit), "high")


def kind(block: Block) -> str:
    """The block's ``type`` as the client wrote it."""
    return str(block.__struct_config__.tag)


def unsupported(what: str, instead: str) -> ApiError:
    return ApiError(
        400,
        f"This gateway cannot pass {what} on to the model yet. {instead}.",
        code="unsupported_content",
    )
