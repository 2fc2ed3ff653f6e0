"""The history window: pure functions, every rule on its own."""

from __future__ import annotations

from app.conversations.history import pair_tool_calls, replayable, window
from app.conversations.records import StoredMessage
from providers.request import (
    JSON_ENCODER,
    AssistantMessage,
    FunctionCall,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    estimate_tokens,
)


def user(text: str) -> UserMessage:
    return UserMessage(text)


def assistant(text: str | None, *call_ids: str) -> AssistantMessage:
    calls = [ToolCall(call_id, FunctionCall("lookup", "{}")) for call_id in call_ids]
    return AssistantMessage(content=text, tool_calls=calls or None)


def turns(count: int) -> list[Message]:
    """``count`` user/assistant pairs: u0, a0, u1, a1, ..."""
    return [m for i in range(count) for m in (user(f"u{i}"), assistant(f"a{i}"))]


def texts(messages: list[Message]) -> list[str | None]:
    return [m.content if isinstance(m.content, str | None) else "parts" for m in messages]


def stored(message: Message, incomplete: bool = False) -> StoredMessage:
    role = type(message).__name__.removesuffix("Message").lower()
    return StoredMessage(0, role, JSON_ENCODER.encode(message), 0.0, incomplete)


def test_the_last_n_messages_are_kept() -> None:
    assert texts(window(turns(5), [user("new")], 4, None)) == ["u3", "a3", "u4", "a4"]


def test_zero_messages_sends_no_history() -> None:
    assert window(turns(3), [user("new")], 0, None) == []


def test_a_window_that_cuts_a_pair_starts_at_the_next_user_message() -> None:
    assert texts(window(turns(5), [user("new")], 3, None)) == ["u4", "a4"]


def test_the_token_budget_drops_the_oldest_first() -> None:
    history = turns(4)
    new: list[Message] = [SystemMessage("be brief"), user("new")]
    fixed_cost = sum(estimate_tokens(m) for m in new)
    last_two_pairs = sum(estimate_tokens(m) for m in history[4:])
    kept = window(history, new, 20, fixed_cost + last_two_pairs)
    assert texts(kept) == ["u2", "a2", "u3", "a3"]
    assert texts(window(history, new, 20, fixed_cost + last_two_pairs - 1)) == ["u3", "a3"]


def test_a_budget_smaller_than_the_request_sends_no_history() -> None:
    assert window(turns(2), [user("x" * 400)], 20, 10) == []


def test_estimates_grow_with_the_text() -> None:
    assert estimate_tokens(user("x" * 400)) > estimate_tokens(user("x" * 40)) + 80


def test_tool_calls_keep_their_results_and_lose_their_orphans() -> None:
    history: list[Message] = [
        user("weather?"),
        assistant(None, "call_1", "call_2"),
        ToolMessage("sunny", "call_1"),
        ToolMessage("stray", "call_9"),
        assistant("It is sunny."),
    ]
    paired = pair_tool_calls(history, [])
    assert isinstance(paired[1], AssistantMessage)
    assert [c.id for c in paired[1].tool_calls or []] == ["call_1"]
    assert [m.tool_call_id for m in paired if isinstance(m, ToolMessage)] == ["call_1"]


def test_a_call_answered_by_the_new_messages_is_kept() -> None:
    history: list[Message] = [user("weather?"), assistant(None, "call_1")]
    paired = window(history, [ToolMessage("sunny", "call_1")], 20, None)
    assert [c.id for c in paired[1].tool_calls] == ["call_1"]  # type: ignore[union-attr]


def test_an_assistant_message_left_with_nothing_is_dropped() -> None:
    history: list[Message] = [user("weather?"), assistant(None, "call_1"), user("never mind")]
    assert texts(pair_tool_calls(history, [])) == ["weather?", "never mind"]


def test_a_result_whose_call_fell_out_of_the_window_is_dropped() -> None:
    history: list[Message] = [
        user("q"),
        assistant(None, "call_1"),
        ToolMessage("r", "call_1"),
        assistant("a"),
        user("q2"),
        assistant("a2"),
    ]
    assert texts(window(history, [user("new")], 4, None)) == ["q2", "a2"]


def test_incomplete_answers_replay_their_text_without_their_tool_calls() -> None:
    messages = replayable(
        [
            stored(user("q")),
            stored(assistant("partial ans", "call_1"), incomplete=True),
            stored(user("q2")),
            stored(assistant(None), incomplete=True),
            stored(assistant("whole", "call_2")),
        ]
    )
    assert texts(messages) == ["q", "partial ans", "q2", "whole"]
    assert isinstance(messages[1], AssistantMessage)
    assert isinstance(messages[3], AssistantMessage)
    assert messages[1].tool_calls is None
    assert [c.id for c in messages[3].tool_calls or []] == ["call_2"]
