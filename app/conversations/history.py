"""Which stored messages go upstream with a new turn: pure functions, no I/O.

The window keeps the last N messages, then, under a token budget, drops the oldest until the whole
prompt fits. What is left must still be a history every vendor accepts:
- it starts with a user message (Anthropic and Gemini refuse an assistant or tool message first);
- every tool call has its result and every result its call (OpenAI and Anthropic refuse orphans);
- an answer that was cut short keeps its text, but not its tool calls, whose arguments may be cut too.
"""

from __future__ import annotations

import msgspec

from app.conversations.records import StoredMessage
from providers.request import AssistantMessage, Message, ToolMessage, UserMessage, estimate_tokens

MESSAGE_DECODER = msgspec.json.Decoder(Message)


def replayable(stored: list[StoredMessage]) -> list[Message]:
    """Stored messages as messages to send again; empty answers that were cut short are left out."""
    messages: list[Message] = []
    for item in stored:
        message = MESSAGE_DECODER.decode(item.body)
        if item.incomplete and isinstance(message, AssistantMessage):
            if not message.content:
                continue
            message = msgspec.structs.replace(message, tool_calls=None)
        messages.append(message)
    return messages


def window(history: list[Message], fixed: list[Message], max_messages: int, max_tokens: int | None) -> list[Message]:
    """The part of ``history`` to send beside ``fixed`` (the request's own messages, always sent whole)."""
    kept = history[-max_messages:] if max_messages > 0 else []
    if max_tokens is not None:
        budget = max_tokens - sum(estimate_tokens(m) for m in fixed)
        sizes = [estimate_tokens(m) for m in kept]
        total, start = sum(sizes), 0
        while start < len(kept) and total > budget:
            total -= sizes[start]
            start += 1
        kept = kept[start:]
    return pair_tool_calls(from_first_user(kept), fixed)


def from_first_user(messages: list[Message]) -> list[Message]:
    for position, message in enumerate(messages):
        if isinstance(message, UserMessage):
            return messages[position:]
    return []


def pair_tool_calls(history: list[Message], following: list[Message]) -> list[Message]:
    """Drop tool calls without results, and results without calls, from ``history``."""
    answered = {m.tool_call_id for m in (*history, *following) if isinstance(m, ToolMessage)}
    called: set[str] = set()
    paired: list[Message] = []
    for message in history:
        if isinstance(message, AssistantMessage) and message.tool_calls:
            calls = [call for call in message.tool_calls if call.id in answered]
            called.update(call.id for call in calls)
            message = msgspec.structs.replace(message, tool_calls=calls or None)
            if not message.tool_calls and not message.content:
                continue
        elif isinstance(message, ToolMessage) and message.tool_call_id not in called:
            continue
        paired.append(message)
    return paired
