"""Graceful shutdown: on SIGTERM (or SIGINT) the gateway drains, then streams in flight get a grace
period to finish.

Draining: ``GET /health/ready`` answers 503 from the signal on, so that a load balancer that polls it
stops sending new requests; for ``reliability.drain_seconds`` (0 by default) the gateway still serves
what comes meanwhile. Then uvicorn stops accepting (a balancer that does not poll, such as nginx, sees
its connections refused and uses the other replicas) and waits for requests in flight; this module
lets each exchange know that shutdown began, so that a stream still running when the grace period
ends closes with an error event instead of being cut off. A second signal ends the drain at once.
The handler is chained in front of uvicorn's own.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Listener(Protocol):
    def poke(self) -> None: ...


class Shutdown:
    def __init__(self) -> None:
        self.draining_since: float | None = None  # the signal came: not ready for new requests
        self.started_at: float | None = None  # the drain is over: uvicorn stops accepting, the grace runs
        self.listeners: weakref.WeakSet[Listener] = weakref.WeakSet()
        self.installed = False
        self.pending: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()
        for listener in list(self.listeners):
            listener.poke()

    def listen(self, listener: Listener) -> None:
        self.listeners.add(listener)

    def drain(self, seconds: float, stop: Callable[[], None]) -> None:
        """Not ready from now; ``stop`` the server (and begin the grace period) after ``seconds``."""
        if self.draining_since is not None:  # a second signal: no more waiting
            if self.pending is not None:
                self.pending.cancel()
            self.pending = None
            self.finish(stop)
            return
        self.draining_since = time.monotonic()
        self.pending = asyncio.get_running_loop().call_later(seconds, self.finish, stop)

    def finish(self, stop: Callable[[], None]) -> None:
        self.pending = None
        self.begin()
        stop()

    def install(self, loop: asyncio.AbstractEventLoop, drain_seconds: float = 0.0) -> None:
        """Chain a handler in front of the server's; only the main thread may set signal handlers."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                def stop() -> None:
                    if callable(previous):
                        previous(signum, frame)

                loop.call_soon_threadsafe(self.drain, drain_seconds, stop)

            signal.signal(sig, handler)
        self.installed = True


SHUTDOWN = Shutdown()
