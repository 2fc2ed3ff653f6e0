"""The ledger: where limits and budgets are counted, in this process (``memory``) or in Redis (``shared``).

A model call ``take``s before it goes upstream: in one step (one Redis script) the ledger checks its
key's requests per minute, streams in flight, tokens per minute and budgets against what the call
reserves (its prompt's estimate plus its output allowance, and their cost), and holds them. After
the answer, ``settle`` turns the reservation into what the upstream reported, frees the stream slot
and adds the call to the day's and the month's usage. Concurrent calls therefore never overshoot a
budget by more than what calls in flight spend beyond what they reserved.

Windows: requests and tokens per minute slide over the last 60 s; days and months are UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Protocol

import msgspec

from app.limits.rules import Budgets, RateLimits

MINUTE = 60.0
DAY_TTL = 62 * 86400  # a day's usage is kept through the next month, for GET /api/v1/usage
MONTH_TTL = 400 * 86400


class Ask(msgspec.Struct, frozen=True):
    """What a call asks of the ledger before it goes upstream."""

    key: str
    member: str  # unique per call: its entries in the windows
    limits: RateLimits
    budgets: Budgets
    tokens: int  # reserved: the prompt's estimate plus the output allowance
    cost: float
    lease: float  # how long a stream slot is held if the call is never settled (its process died)


class Refusal(msgspec.Struct, frozen=True):
    limit: str  # the RateLimits or Budgets field that refused, or "request_too_large"
    retry_after: float  # seconds
    used: float
    allowed: float


class Hold(msgspec.Struct, frozen=True):
    """What a call that was let through holds until it is settled."""

    key: str
    member: str
    second: int  # the tokens-per-minute bucket its reservation went into
    day: str
    month: str
    tokens: int
    cost: float
    slot: bool  # it holds a stream slot
    minute: bool  # its tokens are counted per minute


class Spent(msgspec.Struct, frozen=True):
    """Usage: of one call when settling, or of a day or a month when read back."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    tokens: int = 0  # input + output; while a call is in flight, its reservation
    cost: float = 0.0


class LedgerUnavailableError(Exception):
    """The shared store did not answer; the caller fails open or closed, as configured."""


class Ledger(Protocol):
    shared: bool  # counts hold across processes

    async def take(self, ask: Ask, now: float) -> Hold | Refusal: ...

    async def settle(self, hold: Hold | None, key: str, spent: Spent, now: float) -> None:
        """Turns a reservation into what was spent (``hold`` None: the call reserved nothing)."""

    async def count(self, key: str, member: str, per_minute: int, now: float) -> Refusal | None:
        """Requests per minute alone, for the routes that call no model."""

    async def usage(self, key: str, days: list[str], month: str) -> tuple[list[Spent], Spent]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def day_of(now: float) -> str:
    return day_named(int(now // 86400))


@functools.lru_cache(maxsize=4)
def day_named(day: int) -> str:
    """A UTC day's date, for the day since the epoch: every model call settles into its day, and
    formatting a date each time was one of a request's larger fixed costs."""
    return dt.datetime.fromtimestamp(day * 86400, dt.UTC).strftime("%Y-%m-%d")


def month_of(now: float) -> str:
    return day_of(now)[:7]


def day_resets(now: float) -> float:
    """When the UTC day of ``now`` ends."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + dt.timedelta(days=1)).timestamp()


def month_resets(now: float) -> float:
    first = dt.datetime.fromtimestamp(now, dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return following.timestamp()


def days_of_month(now: float) -> list[str]:
    """The month's days so far, oldest first."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return [today.replace(day=day).isoformat() for day in range(1, today.day + 1)]


def budget_refusal(budgets: Budgets, day: Spent, month: Spent, tokens: int, cost: float, now: float) -> Refusal | None:
    """The first budget the reservation does not fit in, given what the day and the month hold."""
    checks = (
        ("tokens_per_day", budgets.tokens_per_day, day.tokens, tokens, day_resets),
        ("tokens_per_month", budgets.tokens_per_month, month.tokens, tokens, month_resets),
        ("cost_per_day", budgets.cost_per_day, day.cost, cost, day_resets),
        ("cost_per_month", budgets.cost_per_month, month.cost, cost, month_resets),
    )
    for name, allowed, used, asked, resets in checks:
        if allowed is not None and (used + asked > allowed or used >= allowed):
            return Refusal(name, resets(now) - now, used, allowed)
    return None
