"""The streamed answer in OpenAI's dialect: canonical events as ``chat.completion.chunk`` SSE frames.

Every frame of one stream shares its id, created time and model, so their bytes are built once per
stream; a text delta then costs one JSON string encode and a join.
"""

from __future__ import annotations

import msgspec

from app.completion import UsageOut
from app.errors import ApiError
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

ENCODER = msgspec.json.Encoder()
encode = ENCODER.encode
DONE = b"data: [DONE]\n\n"


class ChunkEncoder:
    """Encodes one stream's events; ``finished`` turns true once a finish reason was sent."""

    def __init__(self, completion_id: str, created: int, model: str, *, include_usage: bool):
        head = b"".join(
            (
                b'data: {"id":',
                encode(completion_id),
                b',"object":"chat.completion.chunk","created":',
                str(created).encode(),
                b',"model":',
                encode(model),
                b',"system_fingerprint":null,"choices":[',
            )
        )
        self.choice = head + b'{"index":0,"delta":'
        self.open_tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self.usage_head = head + b'],"usage":'
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.finish: FinishReason | None = None

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

    def end(self, summary: object = None) -> list[bytes]:
        """The usage chunk, when asked for, then ``[DONE]``."""
        if self.include_usage and self.usage is not None:
            return [b"".join((self.usage_head, encode(UsageOut.of(self.usage)), b"}\n\n")), DONE]
        return [DONE]

    def error(self, error: ApiError, request_id: str) -> bytes:
        """An error in the stream ends it without ``[DONE]``, so clients cannot mistake it for success."""
        return b"data: " + error.envelope(request_id) + b"\n\n"
