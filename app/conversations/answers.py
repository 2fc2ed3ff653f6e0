"""An answer as the conversation keeps it: the tool rounds the gateway ran, then the answer itself.

A round is kept as the model's message with its tool calls (and any text it wrote before them),
then one tool message per result, so the next turn shows the model what it already did. A call that
never got its result (the turn was cancelled mid-tool) is left out, so the history stays well-formed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from itertools import groupby
from typing import Literal, Protocol

from app.conversations.records import NewMessage
from app.dialects.answer import AnswerBuilder
from app.dialects.native import NativeUsage
from providers.base import Event, ToolRun
from providers.request import JSON_ENCODER, AssistantMessage, FunctionCall, ToolCall, ToolMessage

Outcome = Literal["complete", "cancelled", "failed"]


class Keeper(Protocol):
    """What keeps an answer once it ends: a conversation's turn, or a stored response."""

    def capture(self, events: AsyncGenerator[Event, None], verbatim: bool = False) -> AsyncGenerator[Event, None]:
        """The attempt's events, unchanged, as the keeper notes them; ``verbatim``: as the upstream sent them."""
        ...

    async def finish(self, outcome: Outcome | None, model: str | None, error: str | None) -> None:
        """Keep the answer before the client hears its end (``None``: there is nothing to keep)."""
        ...

    def end(self, outcome: Outcome | None, model: str | None, error: str | None) -> asyncio.Task[None] | None:
        """Keep the answer in the background, once; what ``finish`` waits for."""
        ...


async def adding(events: AsyncGenerator[Event, None], builder: AnswerBuilder) -> AsyncGenerator[Event, None]:
    """The events unchanged, each added to ``builder``."""
    add = builder.add
    try:
        async for event in events:
            add(event)
            yield event
    finally:
        await events.aclose()


def answer_messages(builder: AnswerBuilder, outcome: Outcome, model: str | None, error: str | None) -> list[NewMessage]:
    messages: list[NewMessage] = []
    start = 0
    for _, entries in groupby(builder.tool_runs, key=lambda entry: entry[0]):
        runs = list(entries)
        position = runs[0][1]
        answered = [run for _, _, run in runs if run.id in builder.tool_results]
        if answered:
            messages.append(tool_round("".join(builder.text[start:position]) or None, answered, model))
            messages += [
                NewMessage("tool", JSON_ENCODER.encode(ToolMessage(builder.tool_results[run.id].content, run.id)))
                for run in answered
            ]
            start = position
    messages.append(final_answer(builder, start, outcome, model, error))
    return messages


def tool_round(text: str | None, runs: list[ToolRun], model: str | None) -> NewMessage:
    calls = [ToolCall(run.id, FunctionCall(run.name, run.arguments)) for run in runs]
    return NewMessage("assistant", JSON_ENCODER.encode(AssistantMessage(content=text, tool_calls=calls)), model=model)


def final_answer(
    builder: AnswerBuilder, start: int, outcome: Outcome, model: str | None, error: str | None
) -> NewMessage:
    """The answer after the last tool round: its text, the client's tool calls, usage and how it ended."""
    calls = [ToolCall(call.id, FunctionCall(call.name, call.arguments)) for call in builder.tool_calls.finished()]
    message = AssistantMessage(content="".join(builder.text[start:]) or None, tool_calls=calls or None)
    return NewMessage(
        "assistant",
        JSON_ENCODER.encode(message),
        incomplete=outcome != "complete",
        reasoning="".join(builder.reasoning) or None,
        model=model,
        finish_reason=builder.finish if outcome == "complete" else None,
        usage=JSON_ENCODER.encode(NativeUsage.of(builder.usage)),
        error=error if outcome == "failed" else "cancelled" if outcome == "cancelled" else None,
    )
