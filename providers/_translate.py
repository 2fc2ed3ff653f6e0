"""Pieces of request translation that several vendors share: system text, tool calls, images.

Each vendor module builds its own dialect; these helpers only read the canonical request.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from providers.base import InvalidRequestError
from providers.request import (
    AssistantMessage,
    ChatRequest,
    DeveloperMessage,
    FilePart,
    ImagePart,
    Message,
    SystemMessage,
    ToolCall,
    message_text,
)

DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)", re.DOTALL)


def system_text(request: ChatRequest) -> str | None:
    """System and developer messages joined, for vendors that take instructions apart from the turns."""
    texts = [message_text(m.content) for m in request.messages if isinstance(m, SystemMessage | DeveloperMessage)]
    return "\n\n".join(texts) if texts else None


def turns(request: ChatRequest) -> list[Message]:
    """The conversation without its system and developer messages."""
    return [m for m in request.messages if not isinstance(m, SystemMessage | DeveloperMessage)]


def tool_arguments(call: ToolCall) -> Any:
    """An assistant tool call's arguments, a JSON string in OpenAI's dialect, as the object other vendors want."""
    if not call.function.arguments.strip():
        return {}
    try:
        return msgspec.json.decode(call.function.arguments)
    except msgspec.DecodeError:
        raise InvalidRequestError(
            f"The arguments of tool call {call.id!r} in the history are not valid JSON; this provider needs "
            "them as a JSON object.",
            param="messages",
        ) from None


def tool_names(request: ChatRequest) -> dict[str, str]:
    """Tool call id to function name, for vendors whose tool results name the function, not the call."""
    return {
        call.id: call.function.name
        for m in request.messages
        if isinstance(m, AssistantMessage)
        for call in m.tool_calls or ()
    }


def tool_name_for(names: dict[str, str], call_id: str, provider: str) -> str:
    name = names.get(call_id)
    if name is None:
        raise InvalidRequestError(
            f"A tool message answers tool_call_id {call_id!r}, but no assistant message before it made that "
            f"call; {provider} needs the function's name, so include the assistant's tool_calls in the history.",
            param="messages",
        )
    return name


def inline_image(part: ImagePart, provider: str) -> tuple[str, str]:
    """A ``data:`` URI image as (media type, base64 data); a URL is a clear 400, never a silent drop."""
    match = DATA_URI.fullmatch(part.image_url.url)
    if match is None:
        raise InvalidRequestError(
            f"{provider} takes images only as inline data, and this image is a URL. Send it as a data URI "
            "(data:image/png;base64,...).",
            param="messages",
        )
    return match["mime"], match["data"]


def inline_file(part: FilePart, provider: str, media_types: tuple[str, ...] = ("application/pdf",)) -> tuple[str, str]:
    """A file sent inline as (media type, base64 data); an OpenAI file id or another type is a clear 400."""
    data = part.file.file_data
    match = DATA_URI.fullmatch(data) if isinstance(data, str) else None
    if match is None:
        raise InvalidRequestError(
            f"{provider} takes files only inline, and this one is an OpenAI file id or not a data: URI. Send "
            "its content as file_data (data:application/pdf;base64,...).",
            param="messages",
        )
    if match["mime"] not in media_types:
        raise InvalidRequestError(
            f"{provider} reads files of type {', '.join(media_types)}, and this one is {match['mime']}. Send "
            "a PDF, or the document's text as a text part.",
            param="messages",
        )
    return match["mime"], match["data"]


def json_object_or_wrapped(text: str) -> Any:
    """A tool result as an object: the result itself when it is a JSON object, else ``{"content": text}``."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}
