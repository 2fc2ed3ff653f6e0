"""The ledger of one process: the same windows and budgets as the shared one, in dictionaries.

Right for one worker. Several workers each keep their own, so the gateway refuses to start with
``WORKERS`` above 1 and limits or budgets configured but no Redis (see ``app.__main__``).
"""

from __future__ import annotations

from collections import defaultdict, deque

from app.limits.ledger import (
    MINUTE,
    Ask,
    Hold,
    Refusal,
    Spent,
    budget_refusal,
    day_of,
    month_of,
)


class Tally:
    """A day's or a month's usage, as counters."""

    __slots__ = ("cached_tokens", "cost", "input_tokens", "output_tokens", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = self.input_tokens = self.output_tokens = self.cached_tokens = self.tokens = 0
        self.cost = 0.0

    def spent(self) -> Spent:
        return Spent(self.requests, self.input_tokens, self.output_tokens, self.cached_tokens, self.tokens, self.cost)

    def add(self, spent: Spent) -> None:
        self.requests += spent.requests
        self.input_tokens += spent.input_tokens
        self.output_tokens += spent.output_tokens
        self.cached_tokens += spent.cached_tokens
        self.tokens += spent.tokens
        self.cost += spent.cost


class MemoryLedger:
    shared = False

    def __init__(self) -> None:
        self.requests: defaultdict[str, deque[float]] = defaultdict(deque)  # request times in the last minute
        self.slots: defaultdict[str, dict[str, float]] = defaultdict(dict)  # stream slots and when their lease ends
        self.minute_tokens: defaultdict[str, dict[int, int]] = defaultdict(dict)  # tokens by second
        self.tallies: defaultdict[tuple[str, str], Tally] = defaultdict(Tally)  # (key, day or month)

    async def take(self, ask: Ask, now: float) -> Hold | Refusal:
        limits, second = ask.limits, int(now)
        refusal = self.per_minute(ask.key, limits.requests_per_minute, now)
        if refusal is not None:
            return refusal
        slots = self.slots[ask.key]
        for member in [m for m, lease in slots.items() if lease <= now]:
            del slots[member]
        if limits.concurrent_streams is not None and len(slots) >= limits.concurrent_streams:
            return Refusal("concurrent_streams", 1.0, len(slots), limits.concurrent_streams)
        buckets = self.minute_tokens[ask.key]
        if limits.tokens_per_minute is not None:
            refusal = minute_tokens_refusal(buckets, second, ask.tokens, limits.tokens_per_minute)
            if refusal is not None:
                return refusal
        day, month = day_of(now), month_of(now)
        refusal = budget_refusal(
            ask.budgets,
            self.tallies[ask.key, day].spent(),
            self.tallies[ask.key, month].spent(),
            ask.tokens,
            ask.cost,
            now,
        )
        if refusal is not None:
            return refusal
        if limits.requests_per_minute is not None:
            self.requests[ask.key].append(now)
        if limits.concurrent_streams is not None:
            slots[ask.member] = now + ask.lease
        minute = limits.tokens_per_minute is not None
        if minute:
            buckets[second] = buckets.get(second, 0) + ask.tokens
        reserved = Spent(requests=1, tokens=ask.tokens, cost=ask.cost)
        self.tallies[ask.key, day].add(reserved)
        self.tallies[ask.key, month].add(reserved)
        slot = limits.concurrent_streams is not None
        return Hold(ask.key, ask.member, second, day, month, ask.tokens, ask.cost, slot, minute)

    async def settle(self, hold: Hold | None, key: str, spent: Spent, now: float) -> None:
        if hold is None:
            day, month = day_of(now), month_of(now)
        else:
            day, month = hold.day, hold.month
            self.slots[key].pop(hold.member, None)
            buckets = self.minute_tokens[key]
            if hold.minute and hold.second in buckets:
                buckets[hold.second] += spent.tokens - hold.tokens
            # The reservation already counted the request and its estimate: only the difference is added.
            spent = Spent(
                0,
                spent.input_tokens,
                spent.output_tokens,
                spent.cached_tokens,
                spent.tokens - hold.tokens,
                spent.cost - hold.cost,
            )
        self.tallies[key, day].add(spent)
        self.tallies[key, month].add(spent)

    async def count(self, key: str, member: str, per_minute: int, now: float) -> Refusal | None:
        refusal = self.per_minute(key, per_minute, now)
        if refusal is None:
            self.requests[key].append(now)
        return refusal

    def per_minute(self, key: str, per_minute: int | None, now: float) -> Refusal | None:
        recent = self.requests[key]
        while recent and recent[0] <= now - MINUTE:
            recent.popleft()
        if per_minute is not None and len(recent) >= per_minute:
            return Refusal("requests_per_minute", recent[0] + MINUTE - now, len(recent), per_minute)
        return None

    async def usage(self, key: str, days: list[str], month: str) -> tuple[list[Spent], Spent]:
        return [self.tallies[key, day].spent() for day in days], self.tallies[key, month].spent()

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def minute_tokens_refusal(buckets: dict[int, int], second: int, tokens: int, allowed: int) -> Refusal | None:
    """Tokens in the last 60 s plus this reservation against the limit; when over, how long until it fits."""
    for old in [s for s in buckets if s <= second - MINUTE]:
        del buckets[old]
    used = sum(buckets.values())
    if tokens > allowed:
        return Refusal("request_too_large", MINUTE, tokens, allowed)
    if used + tokens <= allowed:
        return None
    freed = used
    for at in sorted(buckets):
        freed -= buckets[at]
        if freed + tokens <= allowed:
            return Refusal("tokens_per_minute", max(1.0, at + MINUTE - second), used, allowed)
    return Refusal("tokens_per_minute", MINUTE, used, allowed)  # pragma: no cover - the last bucket frees it
