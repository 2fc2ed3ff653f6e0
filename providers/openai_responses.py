"""OpenAI's Responses API (``POST /responses``), for models that exist only there, such as gpt-5-codex.

Requests become input items (messages, ``function_call`` and ``function_call_output``) with flat tools.
Reading its typed event stream is the private ``_responses_events``' job; a Responses client's own
request goes up as it came (``same_dialect``).
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from msgspec import Struct

from providers._http import StreamMapper
from providers._responses_events import ResponsesAnswer, ResponsesStream
from providers.base import (
    Deployment,
    InvalidRequestError,
    Original,
)
from providers.openai import OpenAIProvider
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
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
    message_text,
)


class InputText(Struct, tag="input_text", tag_field="type"):
    text: str


class InputImage(Struct, tag="input_image", tag_field="type", omit_defaults=True):
    image_url: str
    detail: str | None = None


class InputFile(Struct, tag="input_file", tag_field="type", omit_defaults=True):
    file_data: str | msgspec.UnsetType = msgspec.UNSET
    file_id: str | msgspec.UnsetType = msgspec.UNSET
    filename: str | None = None


class InputMessage(Struct, tag="message", tag_field="type"):
    role: str
    content: str | list[InputText | InputImage | InputFile]


class FunctionCallItem(Struct, tag="function_call", tag_field="type"):
    call_id: str
    name: str
    arguments: str


class FunctionCallOutput(Struct, tag="function_call_output", tag_field="type"):
    call_id: str
    output: str


InputItem = InputMessage | FunctionCallItem | FunctionCallOutput


class FunctionTool(Struct, tag="function", tag_field="type", omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedToolChoice(Struct, tag="function", tag_field="type"):
    name: str


class Reasoning(Struct):
    effort: str
    summary: str = "auto"


class TextOptions(Struct):
    format: dict[str, Any]


class ResponsesBody(Struct, omit_defaults=True):
    model: str
    input: list[InputItem]
    stream: bool
    store: bool
    tools: list[FunctionTool] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: Reasoning | None = None
    text: TextOptions | None = None
    user: str | None = None


def responses_body(request: ChatRequest, model: str) -> ResponsesBody:
    if request.stop is not None:
        raise InvalidRequestError(
            "The OpenAI Responses API has no stop sequences; leave out `stop` for this model.", param="stop"
        )
    choice = request.tool_choice
    return ResponsesBody(
        model=model,
        stream=True,
        store=False,
        input=[item for message in request.messages for item in input_items(message)],
        tools=[
            FunctionTool(t.function.name, t.function.description, t.function.parameters, t.function.strict)
            for t in request.function_tools
        ]
        if request.function_tools
        else None,
        tool_choice=NamedToolChoice(choice.function.name) if isinstance(choice, ToolChoiceFunction) else choice,
        parallel_tool_calls=request.parallel_tool_calls,
        max_output_tokens=request.token_limit,
        temperature=request.temperature,
        top_p=request.top_p,
        reasoning=Reasoning(request.reasoning_effort) if request.reasoning_effort else None,
        text=text_options(request),
        user=request.user,
    )


def input_items(message: Message) -> list[InputItem]:
    match message:
        case UserMessage(content=str() as text):
            return [InputMessage("user", text)]
        case UserMessage(content=list() as parts):
            return [InputMessage("user", [user_part(part) for part in parts])]
        case AssistantMessage(tool_calls=calls):
            text = message_text(message.content)
            items: list[InputItem] = [InputMessage("assistant", text)] if text else []
            return items + [FunctionCallItem(c.id, c.function.name, c.function.arguments) for c in calls or ()]
        case ToolMessage(tool_call_id=call_id):
            return [FunctionCallOutput(call_id, message_text(message.content))]
        case DeveloperMessage():
            return [InputMessage("developer", message_text(message.content))]
    return [InputMessage("system", message_text(message.content))]


def user_part(part: Any) -> InputText | InputImage | InputFile:
    if isinstance(part, ImagePart):
        return InputImage(part.image_url.url, part.image_url.detail)
    if isinstance(part, FilePart):
        return InputFile(part.file.file_data, part.file.file_id, part.file.filename)
    return InputText(part.text)


def text_options(request: ChatRequest) -> TextOptions | None:
    match request.response_format:
        case ResponseFormatJsonSchema(json_schema=schema):
            fmt: dict[str, Any] = {"type": "json_schema", "name": schema.name, "schema": schema.schema or {}}
            if schema.strict is not None:
                fmt["strict"] = schema.strict
            return TextOptions(fmt)
        case ResponseFormatJsonObject():
            return TextOptions({"type": "json_object"})
    return None


class OpenAIResponsesProvider(OpenAIProvider):
    """OpenAI's Responses API, for deployments with ``api: responses``, on the same client and key."""

    dialect = "openai_responses"

    def same_dialect(
        self, request: ChatRequest, deployment: Deployment, original: Original
    ) -> tuple[httpx.Request, StreamMapper]:
        """The client's body as it came; the answer comes back as it is sent."""
        http_request = self.as_it_came(f"{self.base_url}/responses", original, deployment, bool(request.stream))
        mapper = ResponsesStream(self.name, relay=True) if request.stream else ResponsesAnswer(self.name)
        return http_request, mapper

    def build_request(self, request: ChatRequest, deployment: Deployment) -> httpx.Request:
        return self.post(f"{self.base_url}/responses", JSON_ENCODER.encode(responses_body(request, deployment.model)))

    def mapper(self, request: ChatRequest, deployment: Deployment) -> StreamMapper:
        return ResponsesStream(self.name)
