"""Deadlines: which one comes next (a pure function, as a table), and the watcher acting on each."""

from __future__ import annotations

import asyncio

import pytest

from app.chat.deadlines import Deadlines, Marks, next_deadline
from app.config import Reliability
from providers.base import Timeouts

TIMEOUTS = Timeouts(connect=1.0, first_token=10.0, idle=5.0, total=100.0)
NONE = Timeouts(connect=None, first_token=None, idle=None, total=None)


def marks(**fields: object) -> Marks:
    """Started at 0; every other mark as given."""
    result = Marks(0.0)
    for name, value in fields.items():
        setattr(result, name, value)
    return result


@pytest.mark.parametrize(
    ("state", "timeouts", "keepalive", "shutdown", "expected"),
    [
        # Between attempts, only the total counts.
        (marks(), TIMEOUTS, None, None, (100.0, "total")),
        # An attempt without content yet: its first-token clock, from when it began.
        (marks(in_attempt=True, attempt_started=3.0), TIMEOUTS, None, None, (13.0, "first_token")),
        # Content came: the idle clock, from the last content.
        (marks(in_attempt=True, first_content=True, last_content=50.0), TIMEOUTS, None, None, (55.0, "idle")),
        # An attempt whose timeout already fired has no timer until the next attempt.
        (marks(in_attempt=True, attempt_started=3.0, expired="first_token"), TIMEOUTS, None, None, (100.0, "total")),
        # A stream that is silent wants a keep-alive, from the last thing sent.
        (marks(in_attempt=True, last_sent=2.0), TIMEOUTS, 4.0, None, (6.0, "keepalive")),
        # Shutdown: its grace period, from when it began.
        (marks(), TIMEOUTS, None, (20.0, 30.0), (50.0, "shutdown")),
        (marks(in_attempt=True, attempt_started=3.0), TIMEOUTS, None, (0.0, 1.0), (1.0, "shutdown")),
        # No timeouts configured: nothing is ever due.
        (marks(), NONE, None, None, (float("inf"), "total")),
    ],
)
def test_the_next_deadline(
    state: Marks,
    timeouts: Timeouts,
    keepalive: float | None,
    shutdown: tuple[float, float] | None,
    expected: tuple[float, str],
) -> None:
    assert next_deadline(state, timeouts, keepalive, shutdown) == expected


def test_content_is_first_once_and_stamps_both_clocks() -> None:
    deadlines = Deadlines(Reliability(), keepalive=True)
    assert deadlines.content() is True
    assert deadlines.content() is False
    assert deadlines.marks.last_content == deadlines.marks.last_sent > 0
    assert deadlines.first_content


def test_done_stops_the_keepalives() -> None:
    deadlines = Deadlines(Reliability(keepalive_seconds=1.0), keepalive=True)
    assert deadlines.next()[1] == "keepalive"
    deadlines.done()
    assert deadlines.next()[1] == "total"


class Calls:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def __call__(self, what: str) -> None:
        self.names.append(what)


async def test_a_silent_stream_gets_keepalives_until_the_total_timeout() -> None:
    deadlines = Deadlines(Reliability(keepalive_seconds=0.02, timeouts=Timeouts(total=0.3)), keepalive=True)
    calls = Calls()
    await asyncio.wait_for(deadlines.watch(calls), 2)
    assert calls.names[-1] == "total"
    assert 3 <= calls.names.count("keepalive") <= 15  # one per 20 ms of silence, whatever the loop's delays
    assert deadlines.stop == "total"


async def test_a_first_token_timeout_ends_the_attempt_and_waits_for_the_next() -> None:
    deadlines = Deadlines(Reliability(), keepalive=False)
    calls = Calls()
    watcher = asyncio.ensure_future(deadlines.watch(calls))
    deadlines.attempt(Timeouts(first_token=0.03, total=60.0))
    await asyncio.sleep(0.2)
    assert calls.names == ["first_token"]
    assert deadlines.expired == "first_token"
    assert "first token within 0.03 s (timeouts.first_token)" in deadlines.timeout_error("acme").message
    deadlines.attempt(Timeouts(first_token=0.03, total=60.0))  # a retry: its own clock, from now
    assert deadlines.expired is None
    await asyncio.sleep(0.2)
    assert calls.names == ["first_token", "first_token"]
    watcher.cancel()


async def test_content_moves_the_attempt_to_the_idle_clock() -> None:
    deadlines = Deadlines(Reliability(), keepalive=False)
    calls = Calls()
    watcher = asyncio.ensure_future(deadlines.watch(calls))
    deadlines.attempt(Timeouts(first_token=0.05, idle=0.3, total=60.0))
    deadlines.content()
    await asyncio.sleep(0.15)  # past the first-token timeout, within idle
    assert calls.names == []
    await asyncio.sleep(0.5)
    assert calls.names == ["idle"]
    watcher.cancel()


def test_a_shutdown_stop_says_so_and_asks_for_a_retry() -> None:
    deadlines = Deadlines(Reliability(shutdown_grace_seconds=7), keepalive=False)
    deadlines.stop = "shutdown"
    error = deadlines.stopped_error("acme")
    assert (error.status, error.headers.get("Retry-After")) == (503, "1")
    assert "grace period of 7 s" in error.message
