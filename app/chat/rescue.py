"""Mid-stream rescue: an upstream that dies after text reached the client has the next deployment
continue the same answer, and the client gets only the continuation, as one answer.

- Only text is rescued: a break inside reasoning or after a tool call began ends with the error.
- The continuation is asked for in the way the deployment takes: an assistant prefill where the
  provider continues one (Anthropic), else the partial answer as the assistant's message and an
  instruction to go on from exactly where it stopped.
- A deployment that refuses or fails the continuation before any of it arrived does not hide the
  original failure: with none left, the client gets the original error.
- Usage is the sum of both attempts' output plus the second's input; the access log and the native
  ``complete`` event say it was rescued, by whom, and how much came before and after.

The recorder wraps only the streams of aliases with a fallback (and ``midstream: rescue``); every
other stream's per-chunk path is untouched.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import msgspec

from providers.base import (
    Deployment,
    Event,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    ToolRun,
    Usage,
)
from providers.request import AssistantMessage, ChatRequest, UserMessage

CONTINUE = (
    "Your previous answer was cut off. Continue it from exactly where it stopped, mid-sentence if need be: "
    "do not repeat any of it, and do not mention the interruption."
)
NOT_TEXT = (ToolCallStart, ToolCallDelta, ToolRun, ToolResult)


class Rescue:
    """What a rescuable stream delivered, and once it broke, the continuation that takes it over."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.only_text = True  # no tool call began
        self.in_text = False  # the last content was text (not reasoning)
        self.usage: Usage | None = None
        self.original: ProviderError | None = None  # the failure being rescued
        self.broken: str | None = None  # the deployment that broke
        self.before = 0  # text deltas delivered before the break
        self.after = 0  # and by the continuation
        self.pending_space = ""  # whitespace a prefill could not end in, which the client already has

    @property
    def active(self) -> bool:
        return self.original is not None

    def capture(self, events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
        return self.continuing(events) if self.active else self.recording(events)

    async def recording(self, events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
        try:
            async for event in events:
                kind = type(event)
                if kind is TextDelta:
                    self.text.append(event.text)  # type: ignore[union-attr]  # the type was just checked
                    self.in_text = True
                elif kind is ReasoningDelta:
                    self.in_text = False
                elif kind is Usage:
                    self.usage = event  # type: ignore[assignment]  # the type was just checked
                elif isinstance(event, NOT_TEXT):
                    self.only_text = False
                yield event
        finally:
            await events.aclose()

    async def continuing(self, events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
        """The continuation's events: its first text without what the client already has, its usage
        with the first attempt's output added."""
        try:
            async for event in events:
                if type(event) is TextDelta:
                    text = event.text
                    if self.pending_space and not self.after:
                        text = text[len(text) - len(text.lstrip()) :] if text[:1].isspace() else text
                    self.after += 1
                    event = TextDelta(text)
                elif type(event) is Usage:
                    event = msgspec.structs.replace(event, completion_tokens=event.completion_tokens + self.delivered())
                yield event
        finally:
            await events.aclose()

    def can_take(self, error: ProviderError) -> bool:
        """Whether this failure, after the answer began, is one to rescue: text only, and some of it sent."""
        return not self.active and self.only_text and self.in_text and bool(self.text)

    def take(self, error: ProviderError, deployment: Deployment) -> None:
        self.original, self.broken, self.before = error, f"{deployment.provider}/{deployment.model}", len(self.text)

    def delivered(self) -> int:
        """The first attempt's output tokens: as it reported them, else one a delta."""
        return self.usage.completion_tokens if self.usage is not None else self.before

    def request(self, chat: ChatRequest, prefill: bool) -> ChatRequest:
        """The continuation request for a deployment, in the way it takes one."""
        partial = "".join(self.text)
        if prefill:
            kept = partial.rstrip()  # Anthropic refuses a prefill that ends in whitespace
            self.pending_space = partial[len(kept) :]
            messages = [*chat.messages, AssistantMessage(content=kept)]
        else:
            self.pending_space = ""
            messages = [*chat.messages, AssistantMessage(content=partial), UserMessage(CONTINUE)]
        return msgspec.structs.replace(chat, messages=messages)

    def note(self, deployment: Deployment) -> dict[str, object]:
        """What the access log and the native ``complete`` event say of it."""
        return {
            "from": self.broken,
            "by": f"{deployment.provider}/{deployment.model}",
            "error": self.original.code if self.original else None,
            "deltas_before": self.before,
            "deltas_after": self.after,
        }
