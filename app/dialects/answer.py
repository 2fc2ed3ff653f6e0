"""One answer gathered from its events, for the dialects' whole-answer bodies and for stored conversations."""

from __future__ import annotations

from msgspec import Struct

from providers.base import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningSignature,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    ToolRun,
    UpstreamModel,
    Usage,
    Verbatim,
)


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


class Ending:
    """What a streaming dialect holds back for the end of an answer: the tool calls (sent once
    complete), the usage and the finish reason; ``finished`` turns true at the upstream's finish."""

    def __init__(self) -> None:
        self.calls = ToolCallParts()
        self.usage: Usage | None = None
        self.finish: FinishReason | None = None
        self.stop_sequence: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish is not None

    def take(self, event: Event) -> bool:
        """Keep the event if it is one of those; False for any other."""
        match event:
            case ToolCallStart():
                self.calls.start(event)
            case ToolCallDelta():
                self.calls.extend(event)
            case Usage():
                self.usage = event
            case Finish(reason=reason, stop_sequence=stop_sequence):
                self.finish, self.stop_sequence = reason, stop_sequence
            case _:
                return False
        return True


class EndingView:
    """The three things a stream encoder tells the exchange, read from its ``Ending``."""

    ending: Ending

    @property
    def finished(self) -> bool:
        return self.ending.finished

    @property
    def usage(self) -> Usage | None:
        return self.ending.usage

    @property
    def finish(self) -> FinishReason | None:
        return self.ending.finish


class AnswerBuilder:
    """Collects one answer's events; ``finish`` stays None until the provider said how it ended."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.signature = ""  # the vendor's signature of the reasoning, when it signs it (Anthropic)
        self.tool_calls = ToolCallParts()
        self.usage = Usage()
        self.finish: FinishReason | None = None
        self.stop_sequence: str | None = None
        # The tool rounds the gateway ran (MCP): each call with its round and where the text stood then.
        self.tool_runs: list[tuple[int, int, ToolRun]] = []
        self.tool_results: dict[str, ToolResult] = {}
        self.verbatim: bytes | None = None  # the whole answer as an upstream of the client's dialect sent it
        self.model: str | None = None  # the upstream's own name for the model that answered

    def add(self, event: Event) -> None:
        match event:
            case TextDelta(text=text):
                self.text.append(text)
            case ReasoningDelta(text=text):
                self.reasoning.append(text)
            case ReasoningSignature(signature=signature):
                self.signature = signature
            case ToolCallStart():
                self.tool_calls.start(event)
            case ToolCallDelta():
                self.tool_calls.extend(event)
            case Usage():
                self.usage = event
            case Finish(reason=reason, stop_sequence=stop_sequence):
                self.finish, self.stop_sequence = reason, stop_sequence
            case Start():
                pass
            case UpstreamModel(name=name):
                self.model = name
            case ToolRun():
                answered = bool(self.tool_runs) and self.tool_runs[-1][2].id in self.tool_results
                round_ = (self.tool_runs[-1][0] + answered) if self.tool_runs else 0
                self.tool_runs.append((round_, len(self.text), event))
            case ToolResult():
                self.tool_results[event.id] = event
            case Verbatim(data=data):
                self.verbatim = data
