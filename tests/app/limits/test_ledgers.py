"""Both ledgers, the in-process one and Redis (the machine's, on 127.0.0.1:6379), held to the same rules."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from app.limits.ledger import Ask, Hold, Ledger, Refusal, Spent, day_of, day_resets, month_of, month_resets
from app.limits.memory import MemoryLedger
from app.limits.redis_ledger import RedisLedger
from app.limits.rules import Budgets, RateLimits

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    prefix = f"test-{uuid.uuid4().hex}"  # this test's keys only, removed after it
    shared = RedisLedger(REDIS_URL, prefix)
    yield shared
    keys = [key async for key in shared.client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await shared.client.delete(*keys)
    await shared.close()


def ask(
    key: str = "alice",
    tokens: int = 10,
    cost: float = 0.0,
    lease: float = 60.0,
    limits: RateLimits | None = None,
    budgets: Budgets | None = None,
) -> Ask:
    return Ask(key, uuid.uuid4().hex, limits or RateLimits(), budgets or Budgets(), tokens, cost, lease)


async def take(ledger: Ledger, request: Ask) -> Hold | Refusal:
    return await ledger.take(request, time.time())


async def test_requests_per_minute_count_a_sliding_minute_per_key(ledger: Ledger) -> None:
    limits = RateLimits(requests_per_minute=3)
    verdicts = [await take(ledger, ask(limits=limits)) for _ in range(4)]
    assert [type(v) for v in verdicts] == [Hold, Hold, Hold, Refusal]
    refusal = verdicts[3]
    assert isinstance(refusal, Refusal)
    assert (refusal.limit, refusal.used, refusal.allowed) == ("requests_per_minute", 3, 3)
    assert 55 < refusal.retry_after <= 60  # when the oldest leaves the minute
    assert isinstance(await take(ledger, ask("bob", limits=limits)), Hold)  # per key
    assert await ledger.count("alice", "x", 3, time.time()) is not None  # the other routes share the minute


async def test_the_minute_slides() -> None:  # on the in-process ledger, whose clock a test can set
    ledger, limits = MemoryLedger(), RateLimits(requests_per_minute=1)
    assert isinstance(await ledger.take(ask(limits=limits), 1000.0), Hold)
    assert isinstance(await ledger.take(ask(limits=limits), 1059.0), Refusal)
    assert isinstance(await ledger.take(ask(limits=limits), 1060.5), Hold)


async def test_streams_in_flight_are_slots_freed_when_settled_or_when_their_lease_ends(ledger: Ledger) -> None:
    limits = RateLimits(concurrent_streams=2)
    first, second = await take(ledger, ask(limits=limits)), await take(ledger, ask(limits=limits, lease=0.2))
    assert isinstance(first, Hold)
    assert isinstance(second, Hold)
    third = await take(ledger, ask(limits=limits))
    assert isinstance(third, Refusal)
    assert third.limit == "concurrent_streams"
    await ledger.settle(first, "alice", Spent(1, 3, 4, 0, 7), time.time())
    again = await take(ledger, ask(limits=limits))
    assert isinstance(again, Hold)
    assert isinstance(await take(ledger, ask(limits=limits)), Refusal)
    await asyncio.sleep(0.3)  # the second's process "died": its lease ends and so does its slot
    assert isinstance(await take(ledger, ask(limits=limits)), Hold)


async def test_many_at_once_never_take_more_slots_than_there_are(ledger: Ledger) -> None:
    limits = RateLimits(concurrent_streams=7, requests_per_minute=40)
    verdicts = await asyncio.gather(*(take(ledger, ask(limits=limits)) for _ in range(50)))
    assert sum(isinstance(v, Hold) for v in verdicts) == 7
    refusals = [v for v in verdicts if isinstance(v, Refusal)]
    assert {r.limit for r in refusals} == {"concurrent_streams"}


async def test_tokens_per_minute_reserve_then_settle_to_what_was_reported(ledger: Ledger) -> None:
    limits = RateLimits(tokens_per_minute=1000)
    first = await take(ledger, ask(tokens=600, limits=limits))
    assert isinstance(first, Hold)
    over = await take(ledger, ask(tokens=600, limits=limits))
    assert isinstance(over, Refusal)
    assert (over.limit, over.used, over.allowed) == ("tokens_per_minute", 600, 1000)
    assert 1 <= over.retry_after <= 60
    await ledger.settle(first, "alice", Spent(1, 50, 50, 0, 100), time.time())  # it used 100, not 600
    assert isinstance(await take(ledger, ask(tokens=600, limits=limits)), Hold)
    too_large = await take(ledger, ask(tokens=1001, limits=limits))
    assert isinstance(too_large, Refusal)
    assert too_large.limit == "request_too_large"


async def test_a_budget_refuses_what_does_not_fit_and_says_when_it_resets(ledger: Ledger) -> None:
    budgets = Budgets(tokens_per_day=1000, cost_per_month=1.0)
    now = time.time()
    first = await take(ledger, ask(tokens=600, cost=0.3, budgets=budgets))
    assert isinstance(first, Hold)
    over = await take(ledger, ask(tokens=600, cost=0.3, budgets=budgets))
    assert isinstance(over, Refusal)
    assert (over.limit, over.used, over.allowed) == ("tokens_per_day", 600, 1000)
    assert abs(over.retry_after - (day_resets(now) - now)) < 5
    await ledger.settle(first, "alice", Spent(1, 100, 100, 0, 200, 0.1), time.time())
    second = await take(ledger, ask(tokens=600, cost=0.5, budgets=budgets))
    assert isinstance(second, Hold)  # 200 + 600 tokens, 0.1 + 0.5 spent
    costly = await take(ledger, ask(tokens=10, cost=0.5, budgets=budgets))
    assert isinstance(costly, Refusal)
    assert costly.limit == "cost_per_month"
    assert abs(costly.retry_after - (month_resets(now) - now)) < 5


async def test_usage_is_read_from_the_same_counters(ledger: Ledger) -> None:
    now = time.time()
    hold = await take(ledger, ask(tokens=500, cost=0.25, budgets=Budgets(tokens_per_month=10**6)))
    assert isinstance(hold, Hold)
    [today], month = await ledger.usage("alice", [day_of(now)], month_of(now))
    assert (today.requests, today.tokens, today.cost) == (1, 500, 0.25)  # in flight: its reservation
    await ledger.settle(hold, "alice", Spent(1, 30, 12, 10, 42, 0.0125), now)
    await ledger.settle(None, "alice", Spent(1, 5, 5, 0, 10, 0.001), now)  # a call that reserved nothing
    [today], month = await ledger.usage("alice", [day_of(now)], month_of(now))
    assert today == month
    assert (today.requests, today.input_tokens, today.output_tokens, today.cached_tokens) == (2, 35, 17, 10)
    assert today.tokens == 52
    assert today.cost == pytest.approx(0.0135)
    [other], _ = await ledger.usage("bob", [day_of(now)], month_of(now))
    assert other == Spent()


async def test_more_calls_at_once_than_the_pool_has_connections_all_get_an_answer(ledger: Ledger) -> None:
    limits = RateLimits(tokens_per_minute=10**9)  # a Redis client's default pool refused the 101st at once
    verdicts = await asyncio.gather(*(take(ledger, ask(limits=limits)) for _ in range(300)))
    assert all(isinstance(v, Hold) for v in verdicts)
    await asyncio.gather(*(ledger.settle(v, "alice", Spent(1), time.time()) for v in verdicts if isinstance(v, Hold)))
