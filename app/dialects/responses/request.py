"""OpenAI's Responses request, decoded by msgspec, and its translation into the canonical chat request.

``instructions`` becomes the first system message; ``input`` items become messages (``message``),
tool calls (``function_call``, ``custom_tool_call``) and tool results (``*_output``). A ``custom``
(freeform) tool becomes a function taking one string, ``input``. ``reasoning`` items are left out (a
summary is not the reasoning, and encrypted reasoning only OpenAI can read); ``max_output_tokens``,
``reasoning.effort`` and ``text.format`` map to their canonical names. Hosted tools, which run
inside OpenAI, are left out. What the canonical request cannot carry (other item types, parts) is
a 400 that says so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from app.dialects.base import Translation as BaseTranslation
from app.errors import ApiError
from providers.request import (
    JSON_ENCODER,
    AssistantMessage,
    ChatRequest,
    DeveloperMessage,
    FileData,
    FilePart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageUrl,
    JsonSchemaFormat,
    McpTools,
    Message,
    ResponseFormat,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
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
    UserPart,
    whole_number,
)

# A custom (freeform) tool, for an upstream that has only functions: one string argument.
FREEFORM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free text."}},
    "required": ["input"],
    "additionalProperties": False,
}


class Reasoning(Struct):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class TextFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextOptions(Struct):
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(Struct, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    input: str | list[dict[str, Any]] = []
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: TokenCount | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    reasoning: Reasoning | None = None
    text: TextOptions | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: str | None = None
    conversation_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


RESPONSES_REQUEST_DECODER = msgspec.json.Decoder(ResponsesRequest, dec_hook=whole_number)


class Translation(BaseTranslation):
    """One request's translation, and the first thing the canonical request could not carry."""

    only = "OpenAI's Responses API"
    instead = "a model served by OpenAI with `api: responses`"

    def request(self, request: ResponsesRequest) -> ChatRequest:
        tools = self.tools(request.tools or [])
        messages: list[Message] = [SystemMessage(request.instructions)] if request.instructions else []
        items = (
            [{"type": "message", "role": "user", "content": request.input}]
            if isinstance(request.input, str)
            else request.input
        )
        for position, item in enumerate(items):
            messages += self.item(position, item)
        return ChatRequest(
            model=request.model,
            messages=messages or [UserMessage("")],
            stream=request.stream,
            max_completion_tokens=request.max_output_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            tools=tools or None,
            tool_choice=self.tool_choice(request.tool_choice),
            parallel_tool_calls=request.parallel_tool_calls,
            user=request.user,
            response_format=response_format(request.text),
            reasoning_effort=request.reasoning.effort if request.reasoning else None,
            metadata=request.metadata,
            conversation_id=request.conversation_id,
        )

    def item(self, position: int, item: dict[str, Any]) -> list[Message]:
        kind = item.get("type", "message" if "role" in item else None)
        try:
            match kind:
                case "message":
                    return [self.message(msgspec.convert(item, InputMessage))]
                case "function_call" | "custom_tool_call":
                    call = msgspec.convert(item, CallItem)
                    arguments = (
                        call.arguments
                        if kind == "function_call"
                        else JSON_ENCODER.encode({"input": call.input}).decode()
                    )
                    return [AssistantMessage(tool_calls=[ToolCall(call.call_id, FunctionCall(call.name, arguments))])]
                case "function_call_output" | "custom_tool_call_output":
                    output = msgspec.convert(item, OutputItem)
                    return [ToolMessage(output_text(output.output), output.call_id)]
                case "reasoning":
                    return []  # summaries and encrypted reasoning are for OpenAI's own models
        except msgspec.ValidationError as exc:
            raise ApiError(
                400,
                f"input[{position}] is not a valid {kind} item: {exc}. GET /openapi.yaml has the schema.",
                code="invalid_value",
                param=f"input[{position}]",
            ) from None
        self.cannot(f"an input item of type {str(kind)[:60]!r}", "Leave it out")
        return []

    def message(self, message: InputMessage) -> Message:
        content = message.content
        if message.role in ("system", "developer"):
            text = content if isinstance(content, str) else "".join(part_text(p) for p in content)
            return SystemMessage(text) if message.role == "system" else DeveloperMessage(text)
        if message.role == "assistant":
            text = content if isinstance(content, str) else "".join(part_text(p) for p in content)
            return AssistantMessage(content=text)
        if isinstance(content, str):
            return UserMessage(content)
        return UserMessage([part for p in content for part in self.user_part(p)])

    def user_part(self, part: dict[str, Any]) -> list[UserPart]:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            return [TextPart(str(part.get("text", "")))]
        if kind == "input_image" and isinstance(part.get("image_url"), str) and part["image_url"]:
            detail = part.get("detail") if part.get("detail") in ("auto", "low", "high") else None
            return [ImagePart(ImageUrl(part["image_url"], detail))]
        if kind == "input_file" and (part.get("file_data") or part.get("file_id")):
            data, file_id = part.get("file_data") or msgspec.UNSET, part.get("file_id") or msgspec.UNSET
            return [FilePart(FileData(data, file_id, part.get("filename")))]
        self.cannot(f"a content part of type {str(kind)[:60]!r}", "Send input_text, input_image or input_file parts")
        return []

    def tools(self, entries: list[dict[str, Any]]) -> list[Tool | McpTools]:
        """Function and custom tools; a ``namespace``'s tools, flattened; the gateway's MCP tools.

        Hosted tools (``web_search``, ``file_search``, ...) run inside OpenAI, so another provider's
        model cannot be offered them: they are left out, as a model that does not know a tool does
        not call it, and Codex (which offers ``web_search`` on every request) still works.
        """
        result: list[Tool | McpTools] = []
        for position, entry in enumerate(entries):
            kind = entry.get("type")
            try:
                if kind == "mcp" and "server_url" not in entry:
                    result.append(msgspec.convert(entry, McpTools))  # the gateway's own MCP servers
                elif kind == "namespace" and isinstance(entry.get("tools"), list):
                    result += self.tools(entry["tools"])
                elif kind in ("function", "custom"):
                    tool = msgspec.convert(entry, FunctionTool)
                    parameters = tool.parameters if kind == "function" else FREEFORM_PARAMETERS
                    result.append(Tool(FunctionDefinition(tool.name, tool.description, parameters, tool.strict)))
            except msgspec.ValidationError as exc:
                raise ApiError(
                    400,
                    f"tools[{position}] is not a tool: {exc}. Give a function tool its name and parameters.",
                    code="invalid_value",
                    param=f"tools[{position}]",
                ) from None
        return result

    def tool_choice(self, choice: str | dict[str, Any] | None) -> ToolChoice | None:
        if choice is None:
            return None
        if isinstance(choice, str):
            if choice not in ("auto", "none", "required"):
                raise ApiError(
                    400,
                    f"tool_choice {choice[:40]!r} is not one of auto, none, required, or a named tool.",
                    code="invalid_value",
                    param="tool_choice",
                )
            return choice  # type: ignore[return-value]
        name = choice.get("name")
        if choice.get("type") in ("function", "custom") and isinstance(name, str) and name:
            return ToolChoiceFunction("function", ToolChoiceFunctionName(name))
        self.cannot(f"a tool_choice of type {str(choice.get('type'))[:60]!r}", "Name a function tool, or say auto")
        return None


class InputMessage(Struct):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, Any]]
    type: str = "message"


class CallItem(Struct):
    call_id: Annotated[str, Meta(min_length=1)]
    name: Annotated[str, Meta(min_length=1)]
    arguments: str = ""
    input: str = ""
    type: str = ""


class OutputItem(Struct):
    call_id: Annotated[str, Meta(min_length=1)]
    output: str | list[dict[str, Any]] = ""
    type: str = ""


class FunctionTool(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    type: str = ""
    format: Any = None


def part_text(part: dict[str, Any]) -> str:
    text = part.get("text", part.get("refusal", ""))
    return text if isinstance(text, str) else ""


def output_text(output: str | list[dict[str, Any]]) -> str:
    return output if isinstance(output, str) else "".join(part_text(part) for part in output)


def response_format(text: TextOptions | None) -> ResponseFormat | None:
    fmt = text.format if text else None
    if fmt is None or fmt.type == "text":
        return ResponseFormatText() if fmt else None
    if fmt.type == "json_object":
        return ResponseFormatJsonObject()
    return ResponseFormatJsonSchema(JsonSchemaFormat(fmt.name or "response", fmt.description, fmt.schema, fmt.strict))


def translate(request: ResponsesRequest) -> tuple[ChatRequest, ApiError | None]:
    """The canonical request, and what of it the canonical request could not carry."""
    translation = Translation()
    chat = translation.request(request)
    return chat, translation.problem
