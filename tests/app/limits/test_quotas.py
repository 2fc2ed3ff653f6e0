"""The quotas around a model call: what a refusal says, prices, rules, and a limits store that goes away."""

from __future__ import annotations

import time
from typing import Any

import pytest
import structlog

from app.errors import ApiError
from app.http.auth import AuthSettings, GatewayKey
from app.limits.ledger import Ask, Hold, LedgerUnavailableError, Refusal, Spent
from app.limits.memory import MemoryLedger
from app.limits.quotas import Quotas
from app.limits.redis_ledger import RedisLedger
from app.limits.rules import Budgets, KeyRules, Price, Prices, RateLimits
from providers.base import Usage


def quotas(rules: dict[str, KeyRules], ledger: Any = None, *, fail_open: bool = True, **prices: Price) -> Quotas:
    return Quotas(
        ledger or MemoryLedger(),
        rules,
        KeyRules(),
        Prices(prices),
        output_allowance=100,
        fail_open=fail_open,
        lease=60,
    )


def test_a_keys_own_limits_override_the_defaults_field_by_field() -> None:
    auth = AuthSettings(
        rate_limits=RateLimits(requests_per_minute=600, concurrent_streams=20),
        budgets=Budgets(tokens_per_day=10**6),
    )
    keys = [
        GatewayKey("alice", "k1", rate_limits=RateLimits(requests_per_minute=60), budgets=Budgets(cost_per_month=50)),
        GatewayKey("bob", "k2"),
    ]
    rules = auth.rules(keys)
    assert rules["alice"] == KeyRules(
        RateLimits(requests_per_minute=60, concurrent_streams=20), Budgets(tokens_per_day=10**6, cost_per_month=50)
    )
    assert rules["bob"] == KeyRules(auth.rate_limits, auth.budgets)


def test_prices_per_million_tokens_with_cached_input_and_which_price_applies() -> None:
    gpt = Price(input=1.25, output=10, cached_input=0.125)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=100_000, cached_tokens=400_000)
    assert gpt.cost(usage) == pytest.approx(0.6 * 1.25 + 0.4 * 0.125 + 0.1 * 10)
    assert Price(input=2, output=4).cost(usage) == pytest.approx(2 + 0.4)  # cached input at the input price
    prices = Prices({"fast": Price(1, 1), "openai/gpt-5": gpt, "groq/llama": Price(0.1, 0.2)})
    assert prices.served("fast", "openai/gpt-5") is gpt  # the deployment that served is the more exact
    assert prices.served("fast", "ollama/llama") == Price(1, 1)
    assert prices.served("other", None) == Price()
    assert prices.before("fast", ["openai/gpt-5"]) == Price(1, 1)
    assert prices.before("mixed", ["groq/llama", "openai/gpt-5"]) is gpt  # a reservation errs high


async def test_over_a_limit_the_429_names_it_and_says_when_to_retry() -> None:
    q = quotas({"alice": KeyRules(RateLimits(tokens_per_minute=1000))})
    await q.reserve("alice", "echo", [], 400, 500)
    with pytest.raises(ApiError) as info:
        await q.reserve("alice", "echo", [], 400, 500)
    error = info.value
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert "'alice' is over its limit of 1,000 tokens per minute" in error.message
    assert 1 <= int(error.headers["Retry-After"]) <= 60
    with pytest.raises(ApiError) as info:
        await q.reserve("alice", "echo", [], 400, 5000)
    assert info.value.code == "request_too_large"
    assert "5,400 tokens" in info.value.message
    assert "smaller max_tokens" in info.value.message


async def test_over_a_budget_the_429_is_budget_exceeded_and_says_when_it_resets() -> None:
    q = quotas({"alice": KeyRules(budgets=Budgets(cost_per_day=0.01))}, gpt=Price(input=10, output=10))
    hold = await q.reserve("alice", "gpt", [], 500, None)  # 500 + the allowance of 100: 0.006
    await q.settle("alice", hold, "gpt", None, Usage(prompt_tokens=500, completion_tokens=500))  # 0.01 spent
    with pytest.raises(ApiError) as info:
        await q.reserve("alice", "gpt", [], 10, 10)
    error = info.value
    assert (error.status, error.code) == (429, "budget_exceeded")
    assert "has used 0.01 of 0.01 of its budget of spend for today (UTC)" in error.message
    assert "resets at " in error.message
    assert "T00:00:00Z" in error.message
    assert int(error.headers["Retry-After"]) <= 86400


async def test_a_call_with_no_rules_is_only_counted_after() -> None:
    ledger = MemoryLedger()
    q = quotas({}, ledger)
    assert await q.reserve("", "echo", [], 10, None) is None
    await q.settle("", None, "echo", "simulated/echo", Usage(prompt_tokens=3, completion_tokens=2))
    report = await q.report("")
    assert report["key"] == "anonymous"
    today = report["today"]
    assert isinstance(today, dict)
    assert today["requests"] == 1
    assert today["tokens"] == 5


class Flaky:
    """A ledger that is down until told otherwise, counting the times it was asked."""

    shared = True

    def __init__(self) -> None:
        self.down, self.asked = True, 0
        self.memory = MemoryLedger()

    async def take(self, ask: Ask, now: float) -> Hold | Refusal:
        self.asked += 1
        if self.down:
            raise LedgerUnavailableError("Connection refused")
        return await self.memory.take(ask, now)

    async def settle(self, hold: Hold | None, key: str, spent: Spent, now: float) -> None:
        self.asked += 1
        if self.down:
            raise LedgerUnavailableError("Connection refused")


async def test_a_store_that_goes_away_fails_open_logs_once_and_is_tried_again() -> None:
    flaky, now = Flaky(), [1000.0]
    q = quotas({"alice": KeyRules(RateLimits(requests_per_minute=1))}, flaky)
    q.clock = lambda: now[0]
    with structlog.testing.capture_logs() as logs:
        assert await q.reserve("alice", "echo", [], 1, 1) is None  # served, unlimited
        assert await q.reserve("alice", "echo", [], 1, 1) is None
        await q.settle("alice", None, "echo", None, None)
        assert flaky.asked == 1  # within the second after a failure, the store is not asked again
        now[0] += 1.5
        assert await q.reserve("alice", "echo", [], 1, 1) is None  # tried again: still down, not logged again
        now[0] += 1.5
        flaky.down = False
        assert isinstance(await q.reserve("alice", "echo", [], 1, 1), Hold)
    events = [(entry["event"], entry["log_level"]) for entry in logs]
    assert events == [("limits_store_unavailable", "error"), ("limits_store_recovered", "info")]
    assert logs[0]["fail_open"] is True
    with pytest.raises(ApiError):
        await q.reserve("alice", "echo", [], 1, 1)  # and the limit holds again


async def test_failing_closed_is_a_503_that_says_why() -> None:
    q = quotas({"alice": KeyRules(RateLimits(requests_per_minute=1))}, Flaky(), fail_open=False)
    with pytest.raises(ApiError) as info:
        await q.reserve("alice", "echo", [], 1, 1)
    assert (info.value.status, info.value.code) == (503, "limits_unavailable")
    assert "limits.on_redis_down: open" in info.value.message
    assert info.value.headers["Retry-After"] == "1"


async def test_a_real_redis_that_is_not_there_costs_little_and_fails_open() -> None:
    q = quotas({"alice": KeyRules(RateLimits(requests_per_minute=1))}, RedisLedger("redis://127.0.0.1:1/0"))
    start = time.monotonic()
    assert await q.reserve("alice", "echo", [], 1, 1) is None
    assert time.monotonic() - start < 1.0  # refused at once, or bounded by the half-second timeout
    assert not q.available
    await q.ledger.close()


async def test_without_max_tokens_the_allowance_never_makes_a_request_too_large_alone() -> None:
    q = quotas({"alice": KeyRules(RateLimits(tokens_per_minute=50))})  # less than the allowance of 100
    hold = await q.reserve("alice", "echo", [], 20, None)
    assert hold is not None
    assert hold.tokens == 50  # the prompt's 20, and what is left of the minute for its output
    with pytest.raises(ApiError) as info:
        await q.reserve("alice", "echo", [], 20, 60)  # an explicit max_tokens is the client's to lower
    assert info.value.code == "request_too_large"
