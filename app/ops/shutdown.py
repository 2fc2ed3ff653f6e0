"""Graceful shutdown: on SIGTERM (or SIGINT) streams in flight get a grace period to finish.

uvicorn stops accepting and waits for requests in flight; this module lets each exchange know that
shutdown began, so that a stream still running when the grace period ends closes with an error event
instead of being cut off. The handler is chained in front of uvicorn's own.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Listener(Protocol):
    def poke(self) -> None: ...


class Shutdown:
    def __init__(self) -> None:
        self.started_at: float | None = None
        self.listeners: weakref.WeakSet[Listener] = weakref.WeakSet()
        self.installed = False

    def begin(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()
        for listener in list(self.listeners):
            listener.poke()

    def listen(self, listener: Listener) -> None:
        self.listeners.add(listener)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Chain a handler in front of the server's; only the main thread may set signal handlers."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.begin)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)
        self.installed = True


SHUTDOWN = Shutdown()
