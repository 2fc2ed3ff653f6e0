"""OpenAI's Chat Completions dialect: ``chat.completion.chunk`` SSE frames, or one ``chat.completion`` body.

Every frame of one stream shares its id, created time and model, so their bytes are built once per
stream; a text delta then costs one JSON string encode and a join.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType
from starlette.responses import Response

from app.dialects.answer import AnswerBuilder
from app.dialects.base import KEEPALIVE, Summary
from app.errors import ApiError, error_response
from providers.base import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from providers.request import ChatRequest

ENCODER = msgspec.json.Encoder()
encode = ENCODER.encode
DONE = b"data: [DONE]\n\n"


class PromptDetails(Struct):
    cached_tokens: int


class CompletionDetails(Struct):
    reasoning_tokens: int


class UsageOut(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetails
    completion_tokens_details: CompletionDetails

    @classmethod
    def of(cls, usage: Usage) -> UsageOut:
        return cls(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
            PromptDetails(usage.cached_tokens),
            CompletionDetails(usage.reasoning_tokens),
        )


class FunctionOut(Struct):
    name: str
    arguments: str


class ToolCallOut(Struct):
    id: str
    function: FunctionOut
    type: Literal["function"] = "function"


class MessageOut(Struct):
    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: None = None
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ToolCallOut] | UnsetType = UNSET


class Choice(Struct):
    message: MessageOut
    finish_reason: FinishReason
    index: int = 0
    logprobs: None = None


class ChatCompletion(Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: None = None


class ChunkEncoder:
    """Encodes one stream's events; ``finished`` turns true once a finish reason was sent."""

    def __init__(self, completion_id: str, created: int, model: str, *, include_usage: bool):
        self.completion_id, self.created = completion_id, created
        self.open_tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.finish: FinishReason | None = None
        self.serve(model)

    def serve(self, model: str) -> None:
        """The frames' fixed bytes, made once per model rather than per chunk."""
        head = b"".join(
            (
                b'data: {"id":',
                encode(self.completion_id),
                b',"object":"chat.completion.chunk","created":',
                str(self.created).encode(),
                b',"model":',
                encode(model),
                b',"system_fingerprint":null,"choices":[',
            )
        )
        self.choice = head + b'{"index":0,"delta":'
        self.usage_head = head + b'],"usage":'

    @property
    def finished(self) -> bool:
        return self.finish is not None

    def delta(self, delta: bytes) -> bytes:
        return b"".join((self.choice, delta, self.open_tail))

    def encode(self, event: Event) -> bytes | None:
        match event:
            case TextDelta(text=text):
                return b"".join((self.choice, b'{"content":', encode(text), b"}", self.open_tail))
            case ReasoningDelta(text=text):
                return self.delta(b'{"reasoning_content":' + encode(text) + b"}")
            case ToolCallStart(index=index, id=call_id, name=name):
                call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                return self.delta(b'{"tool_calls":[' + encode(call) + b"]}")
            case ToolCallDelta(index=index, arguments=arguments):
                call = {"index": index, "function": {"arguments": arguments}}
                return self.delta(b'{"tool_calls":[' + encode(call) + b"]}")
            case Finish(reason=reason):
                self.finish = reason
                return b"".join((self.choice, b'{},"logprobs":null,"finish_reason":"', reason.encode(), b'"}]}\n\n'))
            case Usage():
                self.usage = event
        return None

    def opening(self) -> bytes:
        """The first chunk, carrying the role, once the upstream has answered."""
        return self.delta(b'{"role":"assistant","content":""}')

    def end(self, summary: Summary | None = None) -> list[bytes]:
        """The usage chunk, when asked for, then ``[DONE]``."""
        if self.include_usage and self.usage is not None:
            return [b"".join((self.usage_head, encode(UsageOut.of(self.usage)), b"}\n\n")), DONE]
        return [DONE]

    def error(self, error: ApiError, request_id: str) -> bytes:
        """An error in the stream ends it without ``[DONE]``, so clients cannot mistake it for success."""
        return b"data: " + error.envelope(request_id) + b"\n\n"


def completion_body(answer: AnswerBuilder, completion_id: str, created: int, model: str) -> bytes:
    """The whole answer as one ``chat.completion``."""
    assert answer.finish is not None
    message = MessageOut(content="".join(answer.text) if answer.text or not answer.tool_calls else None)
    if answer.reasoning:
        message.reasoning_content = "".join(answer.reasoning)
    if answer.tool_calls:
        message.tool_calls = [ToolCallOut(c.id, FunctionOut(c.name, c.arguments)) for c in answer.tool_calls.finished()]
    choice = Choice(message, answer.finish)
    return ENCODER.encode(ChatCompletion(completion_id, created, model, [choice], UsageOut.of(answer.usage)))


class ChatCompletions:
    """The dialect of ``POST /v1/chat/completions``."""

    id_prefix = "chatcmpl-"
    keepalive = KEEPALIVE

    def stream(self, chat: ChatRequest, answer_id: str) -> ChunkEncoder:
        return ChunkEncoder(answer_id, int(time.time()), chat.model, include_usage=chat.include_usage)

    def whole(self, answer: AnswerBuilder, summary: Summary) -> bytes:
        return completion_body(answer, summary.message_id, int(time.time()), summary.model)

    def error_response(self, error: ApiError, request_id: str) -> Response:
        return error_response(error, request_id)


CHAT_COMPLETIONS = ChatCompletions()
