"""The drain before shutdown: not ready at once, the server stopped after the drain, or at a second signal."""

from __future__ import annotations

import asyncio

from app.ops.shutdown import Shutdown


async def test_the_server_is_stopped_after_the_drain() -> None:
    shutdown, stopped = Shutdown(), []
    shutdown.drain(0.1, lambda: stopped.append("stop"))
    assert shutdown.draining_since is not None  # not ready from the signal on
    assert (shutdown.started_at, stopped) == (None, [])  # still serving
    await asyncio.sleep(0.15)
    assert stopped == ["stop"]
    assert shutdown.started_at is not None  # the grace period for streams in flight runs from here


async def test_a_second_signal_ends_the_drain_at_once() -> None:
    shutdown, stopped = Shutdown(), []
    shutdown.drain(60, lambda: stopped.append("first"))
    shutdown.drain(60, lambda: stopped.append("second"))
    assert stopped == ["second"]
    await asyncio.sleep(0.01)
    assert stopped == ["second"]  # the first's timer was cancelled
