"""The tool loop: call the model; when it calls the gateway's MCP tools, run them, add the results to
the conversation and call it again, until it answers or the round limit comes.

Text and reasoning stream through as each round produces them. Tool calls are held until a round
ends: calls of MCP tools become ``ToolRun`` and ``ToolResult`` events (the native API shows them;
OpenAI's chunks do not), and calls of the client's own functions end the loop and go to the client as
usual, after any MCP calls of the same round have run. Usage is summed over every round and sent once.
A tool that fails or times out answers the model with an error text; the client cancelling stops
the loop and any tool call in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import msgspec
import orjson

from app.dialects.answer import FinishedCall, ToolCallParts
from app.http.access import AccessRecord
from app.ops import tracing
from app.tools.registry import McpRegistry, OfferedTool
from providers.base import (
    Event,
    Finish,
    ReasoningDelta,
    ReasoningSignature,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolLoopLimitError,
    ToolResult,
    ToolRun,
    Usage,
)
from providers.mcp import McpError
from providers.request import AssistantMessage, ChatRequest, FunctionCall, Message, ToolCall, ToolMessage

ModelCall = Callable[[ChatRequest], AsyncGenerator[Event, None]]  # one round's request to the model's stream


class Round:
    """What one model call produced besides the streamed text: its tool calls, usage and finish."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls = ToolCallParts()
        self.usage = Usage()
        self.finish = Finish("stop")


class ToolLoop:
    def __init__(
        self,
        registry: McpRegistry,
        offered: dict[str, OfferedTool],
        max_rounds: int,
        record: AccessRecord,
        log_arguments: bool,
    ):
        self.registry = registry
        self.offered = offered
        self.max_rounds = max_rounds
        self.record = record
        self.log_arguments = log_arguments

    async def run(self, call_model: ModelCall, chat: ChatRequest) -> AsyncGenerator[Event, None]:
        messages, usage = list(chat.messages), Usage()
        for number in range(self.max_rounds):
            round_ = Round()
            stream = call_model(msgspec.structs.replace(chat, messages=messages))
            try:
                async for event in stream:
                    passed = self.take(event, round_, first=number == 0)
                    if passed is not None:
                        yield passed
            finally:
                await stream.aclose()
            usage = add_usage(usage, round_.usage)
            calls = round_.calls.finished()
            ours = [c for c in calls if c.name in self.offered]
            theirs = [c for c in calls if c.name not in self.offered]
            results: list[ToolResult] = []
            if ours:
                for call in ours:
                    yield ToolRun(call.id, call.name, call.arguments, self.offered[call.name].server)
                results = await asyncio.gather(*(self.call(c) for c in ours))
                for result in results:
                    yield result
            if not ours or theirs:
                for index, call in enumerate(theirs):
                    yield ToolCallStart(index, call.id, call.name)
                    yield ToolCallDelta(index, call.arguments)
                yield usage
                yield Finish("tool_calls") if theirs else round_.finish
                return
            messages += exchanged(round_, ours, [result.content for result in results])
        raise ToolLoopLimitError(
            f"The model was still calling tools after {self.max_rounds} rounds (tool_loop.max_rounds), so the "
            "gateway stopped. Ask for less, or raise tool_loop.max_rounds in the gateway's config."
        )

    def take(self, event: Event, round_: Round, first: bool) -> Event | None:
        """Keep what the round needs; return what goes on to the client now."""
        match event:
            case TextDelta(text=text):
                round_.text.append(text)
                return event
            case ReasoningDelta() | ReasoningSignature():
                return event
            case ToolCallStart():
                round_.calls.start(event)
            case ToolCallDelta():
                round_.calls.extend(event)
            case Usage():
                round_.usage = event
            case Finish():
                round_.finish = event
            case Start() if first:
                return event
        return None

    async def call(self, call: FinishedCall) -> ToolResult:
        """Run one MCP tool, in its own span when traces are on."""
        tool = self.offered[call.name]
        with tracing.TRACING.tool(tool.server, tool.name) as span:
            result = await self.run_tool(call, tool)
            if span is not None:
                tracing.outcome(span, {"gen_ai.tool.call.id": call.id}, "tool_error" if result.is_error else None)
            return result

    async def run_tool(self, call: FinishedCall, tool: OfferedTool) -> ToolResult:
        """A failure or timeout is a result the model reads, not an error of the request."""
        started = time.perf_counter()
        outcome, content, is_error = "ok", "", False
        try:
            arguments = parse_arguments(call.arguments)
            async with asyncio.timeout(self.registry.servers[tool.server].client.spec.timeout):
                answer = await self.registry.servers[tool.server].client.call_tool(tool.name, arguments)
            content, is_error = answer.text, answer.is_error
            outcome = "error" if is_error else "ok"
        except ValueError as exc:
            outcome, is_error, content = "error", True, f"Error: the arguments are not a JSON object ({exc})."
        except TimeoutError:
            seconds = self.registry.servers[tool.server].client.spec.timeout
            outcome, is_error = "timeout", True
            content = f"Error: tool {tool.name} on MCP server {tool.server} did not answer within {seconds:g} s."
        except McpError as exc:
            outcome, is_error, content = "error", True, f"Error: {exc}"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            duration = round((time.perf_counter() - started) * 1000, 2)
            self.note(tool, call, outcome, duration)
        return ToolResult(call.id, call.name, tool.server, content, is_error, duration)

    def note(self, tool: OfferedTool, call: FinishedCall, outcome: str, duration_ms: float) -> None:
        entry: dict[str, Any] = {"server": tool.server, "tool": tool.name, "duration_ms": duration_ms}
        entry["outcome"] = outcome
        if self.log_arguments:
            entry["arguments"] = call.arguments
        self.record.tool_calls.append(entry)


def parse_arguments(raw: str) -> dict[str, Any]:
    value = orjson.loads(raw or "{}")
    if not isinstance(value, dict):
        raise ValueError(f"got {type(value).__name__}")
    return value


def exchanged(round_: Round, calls: list[FinishedCall], results: list[str]) -> list[Message]:
    """The round as the model will read it next time: its message with the tool calls, then each result."""
    assistant = AssistantMessage(
        content="".join(round_.text) or None,
        tool_calls=[ToolCall(c.id, FunctionCall(c.name, c.arguments)) for c in calls],
    )
    return [assistant, *(ToolMessage(result, call.id) for call, result in zip(calls, results, strict=True))]


def add_usage(total: Usage, more: Usage) -> Usage:
    return Usage(
        total.prompt_tokens + more.prompt_tokens,
        total.completion_tokens + more.completion_tokens,
        total.cached_tokens + more.cached_tokens,
        total.reasoning_tokens + more.reasoning_tokens,
    )
