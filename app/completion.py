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


class CompletionBuilder:
    """Collects one answer's events; ``finish`` stays None until the provider said how it ended."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, tuple[str, str, list[str]]] = {}
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
            case ToolCallStart(index=index, id=call_id, name=name):
                self.tool_calls[index] = (call_id, name, [])
            case ToolCallDelta(index=index, arguments=arguments):
                self.tool_calls[index][2].append(arguments)
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
            calls = (self.tool_calls[i] for i in sorted(self.tool_calls))
            message.tool_calls = [ToolCallOut(id_, FunctionOut(name, "".join(args))) for id_, name, args in calls]
        choice = Choice(message, self.finish)
        return ENCODER.encode(ChatCompletion(completion_id, created, model, [choice], UsageOut.of(self.usage)))
