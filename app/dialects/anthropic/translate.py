"""Anthropic's Messages request turned into the canonical chat request.

The system prompt becomes a system message; a user turn's ``tool_result`` blocks become tool
messages (before the rest of the turn, as the results answer the previous assistant turn); an
assistant turn's ``tool_use`` blocks become tool calls with their input as a JSON string. Thinking
blocks are dropped on the way (the canonical request has no place for their signatures), and a
thinking budget becomes a reasoning effort. Text documents become text, PDFs files. What the
canonical request cannot carry is noted, never silently dropped: it is a 400 that says so unless
the request goes to an upstream that speaks Messages itself, as it came.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from app.dialects.anthropic.request import (
    Base64Source,
    Block,
    ContentSource,
    CustomTool,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    OtherBlock,
    OutputConfig,
    RedactedThinkingBlock,
    TextBlock,
    TextSource,
    ThinkingBlock,
    ThinkingConfig,
    ToolChoiceSpec,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
)
from app.dialects.base import Translation as BaseTranslation
from app.errors import ApiError
from providers.request import (
    JSON_ENCODER,
    AssistantMessage,
    ChatRequest,
    FileData,
    FilePart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageUrl,
    McpTools,
    Message,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
    ToolChoiceFunctionName,
    ToolMessage,
    UserMessage,
    UserPart,
)

# A thinking budget as the nearest reasoning effort, by the budget's upper bound in tokens.
Effort = Literal["low", "medium", "high"]
EFFORTS: tuple[tuple[int, Effort], ...] = ((1024, "low"), (8192, "medium"))


class Translation(BaseTranslation):
    """One request's translation into the canonical request, and the first thing it could not carry.

    What cannot be carried is left out and noted: an upstream that speaks Messages gets the request as
    it came, and any other upstream gets a 400 that says what and why (``problem``).
    """

    only = "Anthropic's Messages API"
    instead = "a model served by Anthropic"

    def request(self, request: MessagesRequest) -> ChatRequest:
        choice, parallel = tool_choice(request.tool_choice)
        messages: list[Message] = [SystemMessage(system_text(request.system))] if request.system else []
        for message in request.messages:
            messages += self.turn(message.role, message.content)
        return ChatRequest(
            model=request.model,
            messages=messages,
            stream=request.stream,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop_sequences,
            tools=self.tools(request.tools) if request.tools else None,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            user=request.metadata.user_id if request.metadata else None,
            reasoning_effort=effort(request.thinking, request.output_config),
            conversation_id=request.conversation_id,
        )

    def turn(self, role: str, content: str | list[Block]) -> list[Message]:
        if role == "assistant":
            return [self.assistant_turn(content)]
        if role == "user":
            return self.user_turn(content)
        if isinstance(content, str):
            return [SystemMessage(content)]
        if any(not isinstance(block, TextBlock) for block in content):
            self.cannot("a non-text block in a system message", "Send system messages as text")
        return [SystemMessage(system_text([block for block in content if isinstance(block, TextBlock)]))]

    def user_turn(self, content: str | list[Block]) -> list[Message]:
        """Tool results first, as tool messages, then the turn's own text, images and documents, if any."""
        if isinstance(content, str):
            return [UserMessage(content)]
        results: list[Message] = [self.tool_message(b) for b in content if isinstance(b, ToolResultBlock)]
        parts = [part for block in content for part in self.result_attachments(block)]
        parts += [part for block in content for part in self.user_parts(block)]
        return [*results, UserMessage(parts)] if parts or not results else results

    def result_attachments(self, block: Block) -> list[UserPart]:
        """A tool result's images and documents, which a tool message cannot hold: they follow the
        results in the user turn, named by the call they answer."""
        if not isinstance(block, ToolResultBlock) or isinstance(block.content, str):
            return []
        attached = [p for part in block.content if not isinstance(part, TextBlock) for p in self.user_parts(part)]
        return [TextPart(f"(Attached to the result of tool call {block.tool_use_id}:)"), *attached] if attached else []

    def user_parts(self, block: Block) -> list[UserPart]:
        match block:
            case TextBlock(text=text):
                return [TextPart(text)]
            case ImageBlock():
                return self.image(block)
            case DocumentBlock():
                return self.document(block)
            case ToolResultBlock() | ThinkingBlock() | RedactedThinkingBlock():
                return []  # results are tool messages; thinking has no place in a user turn
            case OtherBlock(kind=kind, why=why):
                self.cannot(f"a block of type {kind!r} ({why})", "Leave it out")
            case _:
                self.cannot(f"a `{kind_of(block)}` block in a user turn", "Send text, image and document blocks")
        return []

    def image(self, block: ImageBlock) -> list[UserPart]:
        match block.source:
            case Base64Source(media_type=media_type, data=data):
                return [ImagePart(ImageUrl(f"data:{media_type};base64,{data}"))]
            case UrlSource(url=url):
                return [ImagePart(ImageUrl(url))]
        self.cannot("an image from Anthropic's Files API (a `file` source)", "Send the image as base64 or a URL")
        return []

    def document(self, block: DocumentBlock) -> list[UserPart]:
        """Text documents as text (titled) for any model; PDFs as files, for the providers that read them."""
        title = f"{block.title}\n\n" if block.title else ""
        match block.source:
            case TextSource(data=data):
                return [TextPart(title + data)]
            case ContentSource(content=str() as text):
                return [TextPart(title + text)]
            case ContentSource(content=list() as blocks):
                return [TextPart(title)] * bool(title) + [p for b in blocks for p in self.user_parts(b)]
            case Base64Source(media_type=media_type, data=data):
                return [FilePart(FileData(f"data:{media_type};base64,{data}", filename=block.title))]
        source = "a URL" if isinstance(block.source, UrlSource) else "Anthropic's Files API"
        self.cannot(f"a `document` from {source}", "Send the document inline, as base64 or text")
        return []

    def tool_message(self, block: ToolResultBlock) -> ToolMessage:
        if isinstance(block.content, str):
            text = block.content
        else:
            text = "".join(part.text for part in block.content if isinstance(part, TextBlock))
        return ToolMessage(f"Error: {text}" if block.is_error else text, block.tool_use_id)

    def assistant_turn(self, content: str | list[Block]) -> AssistantMessage:
        """Text and tool calls; thinking is left out (the canonical request has no place for its signature)."""
        if isinstance(content, str):
            return AssistantMessage(content=content)
        for block in content:
            if not isinstance(block, TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock):
                what = block.kind if isinstance(block, OtherBlock) else kind_of(block)
                self.cannot(f"a `{what}` block in an assistant turn", "Send text and tool_use blocks")
        text = "".join(block.text for block in content if isinstance(block, TextBlock))
        calls = [
            ToolCall(block.id, FunctionCall(block.name, JSON_ENCODER.encode(block.input).decode()))
            for block in content
            if isinstance(block, ToolUseBlock)
        ]
        return AssistantMessage(content=text or None, tool_calls=calls or None)

    def tools(self, entries: list[dict[str, Any]]) -> list[Tool | McpTools]:
        """Custom tools as functions; ``{"type": "mcp", "server": ...}`` as the gateway's MCP tools; server
        tools (web search, code execution...) only for an upstream that speaks Messages."""
        result: list[Tool | McpTools] = []
        for position, entry in enumerate(entries):
            kind = entry.get("type")
            try:
                if kind == "mcp":
                    result.append(msgspec.convert(entry, McpTools))
                    continue
                if kind not in (None, "custom"):
                    self.cannot(f"the server tool {str(kind)[:60]!r}", "Offer it as a custom tool with an input_schema")
                    continue
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


def translate(request: MessagesRequest) -> tuple[ChatRequest, ApiError | None]:
    """The canonical request, and what of the request it could not carry (None when it carries all)."""
    translation = Translation()
    chat = translation.request(request)
    return chat, translation.problem


def chat_request(request: MessagesRequest) -> ChatRequest:
    """The canonical request, or the 400 for what it cannot carry."""
    chat, problem = translate(request)
    if problem is not None:
        raise problem
    return chat


def system_text(system: str | list[TextBlock] | None) -> str:
    return system if isinstance(system, str) else "\n\n".join(block.text for block in system or ())


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


def kind_of(block: Block) -> str:
    """The block's ``type`` as the client wrote it."""
    return str(block.__struct_config__.tag)
