"""The non-streaming answer: canonical events aggregated into one OpenAI ``chat.completion`` body."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from providers.base import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    ToolRun,
    Usage,
)


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


ENCODER = msgspec.json.Encoder()


class FinishedCall(Struct, frozen=True):
    index: int
    id: str
    name: str
    arguments: str


class ToolCallParts:
    """Tool calls as they stream: each starts with its id and name, then its arguments come in pieces."""

    def __init__(self) -> None:
        self.calls: dict[int, tuple[str, str, list[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self.calls)

    def start(self, event: ToolCallStart) -> None:
        self.calls[event.index] = (event.id, event.name, [])

    def extend(self, event: ToolCallDelta) -> None:
        self.calls[event.index][2].append(event.arguments)

    def finished(self) -> list[FinishedCall]:
        """Every call, in index order, its arguments joined."""
        return [
            FinishedCall(i, call_id, name, "".join(parts)) for i, (call_id, name, parts) in sorted(self.calls.items())
        ]


class CompletionBuilder:
    """Collects one answer's events; ``finish`` stays None until the provider said how it ended."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls = ToolCallParts()
        self.usage = Usage()
        self.finish: FinishReason | None = None
        # The tool rounds the gateway ran (MCP): each call with its round and where the text stood then.
        self.tool_runs: list[tuple[int, int, ToolRun]] = []
        self.tool_results: dict[str, ToolResult] = {}

    def add(self, event: Event) -> None:
        match event:
            case TextDelta(text=text):
                self.text.append(text)
            case ReasoningDelta(text=text):
                self.reasoning.append(text)
            case ToolCallStart():
                self.tool_calls.start(event)
            case ToolCallDelta():
                self.tool_calls.extend(event)
            case Usage():
                self.usage = event
            case Finish(reason=reason):
                self.finish = reason
            case Start():
                pass
            case ToolRun():
                answered = bool(self.tool_runs) and self.tool_runs[-1][2].id in self.tool_results
                round_ = (self.tool_runs[-1][0] + answered) if self.tool_runs else 0
                self.tool_runs.append((round_, len(self.text), event))
            case ToolResult():
                self.tool_results[event.id] = event

    def encode(self, completion_id: str, created: int, model: str) -> bytes:
        assert self.finish is not None
        message = MessageOut(content="".join(self.text) if self.text or not self.tool_calls else None)
        if self.reasoning:
            message.reasoning_content = "".join(self.reasoning)
        if self.tool_calls:
            message.tool_calls = [
                ToolCallOut(c.id, FunctionOut(c.name, c.arguments)) for c in self.tool_calls.finished()
            ]
        choice = Choice(message, self.finish)
        return ENCODER.encode(ChatCompletion(completion_id, created, model, [choice], UsageOut.of(self.usage)))
