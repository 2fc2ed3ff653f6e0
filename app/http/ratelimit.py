"""Rate limits per gateway key: requests per minute and requests in flight (streams included).

In-process by default; ``RateLimiter`` is the small interface a shared store (Redis, say) would
implement when several replicas must share one budget.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Annotated, Protocol

import msgspec

WINDOW = 60.0


class RateLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    requests_per_minute: Annotated[int, msgspec.Meta(ge=1)] | None = None
    concurrent_streams: Annotated[int, msgspec.Meta(ge=1)] | None = None


class RateLimiter(Protocol):
    def acquire(self, key: str) -> float | None:
        """None when the request may go ahead (then ``release`` when it ends), else seconds to wait."""

    def release(self, key: str) -> None: ...


class InProcessRateLimiter:
    """A sliding one-minute window of request times, and a count of requests in flight, per key."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self.recent: defaultdict[str, deque[float]] = defaultdict(deque)
        self.in_flight: defaultdict[str, int] = defaultdict(int)

    def acquire(self, key: str) -> float | None:
        now, recent = self.clock(), self.recent[key]
        while recent and recent[0] <= now - WINDOW:
            recent.popleft()
        per_minute, concurrent = self.limits.requests_per_minute, self.limits.concurrent_streams
        if per_minute is not None and len(recent) >= per_minute:
            return recent[0] + WINDOW - now
        if concurrent is not None and self.in_flight[key] >= concurrent:
            return 1.0  # a slot frees when a stream ends; there is no telling when
        recent.append(now)
        self.in_flight[key] += 1
        return None

    def release(self, key: str) -> None:
        self.in_flight[key] -= 1
