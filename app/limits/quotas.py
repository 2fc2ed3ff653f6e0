"""Limits and budgets per gateway key, enforced on the ledger, and what a refusal tells the client.

A model call ``reserve``s before it goes upstream and ``settle``s after; other routes only ``count``
against requests per minute. When the shared ledger does not answer, the gateway fails open (serves,
counting nothing) or closed (503), as ``limits.on_redis_down`` says; it logs the outage once, and
tries the store again at most once a second until it answers.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import msgspec
import structlog

from app.errors import ApiError
from app.limits.ledger import (
    Ask,
    Hold,
    Ledger,
    LedgerUnavailableError,
    Refusal,
    Spent,
    day_resets,
    days_of_month,
    month_of,
    month_resets,
)
from app.limits.rules import KeyRules, Prices
from providers.base import Usage

T = TypeVar("T")
RETRY_DOWN_SECONDS = 1.0
ANONYMOUS = "anonymous"  # whose usage is counted when the gateway has no keys
log = structlog.get_logger("gateway")

LIMIT_WORDS = {
    "requests_per_minute": "requests per minute",
    "tokens_per_minute": "tokens per minute (input and output)",
    "concurrent_streams": "streams in flight",
    "tokens_per_day": "tokens for today (UTC)",
    "tokens_per_month": "tokens for this month (UTC)",
    "cost_per_day": "spend for today (UTC)",
    "cost_per_month": "spend for this month (UTC)",
}


class Quotas:
    def __init__(
        self,
        ledger: Ledger,
        rules: Mapping[str, KeyRules],
        default: KeyRules,
        prices: Prices,
        *,
        output_allowance: int,
        fail_open: bool,
        lease: float,
        clock: Callable[[], float] = time.time,
    ):
        self.ledger, self.rules, self.default, self.prices = ledger, dict(rules), default, prices
        self.output_allowance, self.fail_open, self.lease, self.clock = output_allowance, fail_open, lease, clock
        self.down_since: float | None = None  # when the ledger stopped answering; None while it answers
        self.retry_at = 0.0

    def rules_of(self, key: str) -> KeyRules:
        return self.rules.get(key, self.default)

    async def count(self, key: str) -> None:
        """A route that calls no model: requests per minute only."""
        per_minute = self.rules_of(key).limits.requests_per_minute
        if per_minute is None:
            return
        refusal = await self.guarded(lambda: self.ledger.count(key, uuid.uuid4().hex, per_minute, self.clock()))
        if refusal is not None:
            raise refused(key, refusal, 0)

    async def reserve(
        self, key: str, alias: str, deployments: list[str], prompt_tokens: int, output: int | None
    ) -> Hold | None:
        """Before a model call goes upstream: refuses it (a 429) or holds what it may spend."""
        rules = self.rules_of(key)
        if not rules.reserves:
            return None  # nothing to check: the call is counted when it settles
        if output is None:
            output = self.output_allowance
            per_minute = rules.limits.tokens_per_minute
            if per_minute is not None:  # the allowance alone never makes a call too large for the minute
                output = max(1, min(output, per_minute - prompt_tokens))
        tokens = prompt_tokens + output
        price = self.prices.before(alias, deployments)
        cost = price.cost(Usage(prompt_tokens=prompt_tokens, completion_tokens=tokens - prompt_tokens))
        ask = Ask(key or ANONYMOUS, uuid.uuid4().hex, rules.limits, rules.budgets, tokens, cost, self.lease)
        verdict = await self.guarded(lambda: self.ledger.take(ask, self.clock()))
        if isinstance(verdict, Refusal):
            raise refused(key, verdict, tokens)
        return verdict

    async def settle(
        self, key: str, hold: Hold | None, alias: str | None, deployment: str | None, usage: Usage | None
    ) -> None:
        """After a model call: what it spent, as the upstream reported it (nothing when it never answered)."""
        usage = usage or Usage()
        cost = self.prices.served(alias, deployment).cost(usage)
        spent = Spent(1, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.total_tokens, cost)
        await self.guarded(lambda: self.ledger.settle(hold, key or ANONYMOUS, spent, self.clock()), quiet=True)

    async def guarded(self, step: Callable[[], Awaitable[T]], *, quiet: bool = False) -> T | None:
        """One ledger step; while the ledger is down, none (fail open) or a 503 (fail closed)."""
        now = self.clock()
        if self.down_since is not None and now < self.retry_at:
            self.unavailable(quiet)
            return None
        try:
            result = await step()
        except LedgerUnavailableError as exc:
            if self.down_since is None:
                self.down_since = now
                log.error("limits_store_unavailable", error=str(exc), fail_open=self.fail_open)
            self.retry_at = now + RETRY_DOWN_SECONDS
            self.unavailable(quiet)
            return None
        if self.down_since is not None:
            log.info("limits_store_recovered", down_seconds=round(now - self.down_since, 1))
            self.down_since = None
        return result

    def unavailable(self, quiet: bool) -> None:
        if not (self.fail_open or quiet):
            raise limits_unavailable()

    @property
    def available(self) -> bool:
        return self.down_since is None

    async def report(self, key: str) -> dict[str, object]:
        """A key's limits, budgets and usage: this month's days so far, and the month (GET /api/v1/usage)."""
        now, name = self.clock(), key or ANONYMOUS
        days, month = days_of_month(now), month_of(now)
        try:
            daily, monthly = await self.ledger.usage(name, days, month)
        except LedgerUnavailableError:
            raise limits_unavailable() from None  # failing open serves calls, but there is no usage to show
        rules = self.rules_of(key)
        return {
            "key": name,
            "rate_limits": msgspec.to_builtins(rules.limits),
            "budgets": msgspec.to_builtins(rules.budgets),
            "today": {"date": days[-1], **totals(daily[-1]), "resets_at": iso(day_resets(now))},
            "month": {"period": month, **totals(monthly), "resets_at": iso(month_resets(now))},
            "days": [{"date": day, **totals(spent)} for day, spent in zip(days, daily, strict=True) if spent.requests],
        }


def limits_unavailable() -> ApiError:
    return ApiError(
        503,
        "The gateway cannot check this key's limits: its limits store (Redis) is not answering. Retry "
        "shortly; the operator can set limits.on_redis_down: open to serve without limits meanwhile.",
        code="limits_unavailable",
        type="server_error",
        headers={"Retry-After": "1"},
    )


def totals(spent: Spent) -> dict[str, object]:
    fields: dict[str, object] = msgspec.to_builtins(spent)
    fields["cost"] = round(spent.cost, 6)
    return fields


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def refused(key: str, refusal: Refusal, reserved: int) -> ApiError:
    seconds = max(1, math.ceil(refusal.retry_after))
    who = f"The gateway key {key!r}" if key else "This gateway"
    if refusal.limit == "request_too_large":
        return ApiError(
            429,
            f"This request may use {reserved:,} tokens (its prompt's estimate plus its max_tokens, or the "
            f"gateway's output allowance), more than the {refusal.allowed:,.0f} tokens per minute allowed to "
            f"{key or 'this gateway'!r} in all. Send a shorter prompt or a smaller max_tokens.",
            code="request_too_large",
            type="rate_limit_error",
            headers={"Retry-After": str(seconds)},
        )
    words = LIMIT_WORDS.get(refusal.limit, refusal.limit)
    if refusal.limit.startswith(("tokens_per_d", "tokens_per_mo", "cost_")):
        resets = iso(time.time() + refusal.retry_after)
        used = (
            f"{refusal.used:,.2f} of {refusal.allowed:,.2f}"
            if "cost" in refusal.limit
            else (f"{refusal.used:,.0f} of {refusal.allowed:,.0f}")
        )
        return ApiError(
            429,
            f"{who} has used {used} of its budget of {words}, and this request reserves {reserved:,} tokens more. "
            f"The budget resets at {resets} (in {seconds:,} s); ask the operator for a larger one, or send a "
            "smaller max_tokens.",
            code="budget_exceeded",
            type="rate_limit_error",
            headers={"Retry-After": str(seconds)},
        )
    return ApiError(
        429,
        f"{who} is over its limit of {refusal.allowed:,.0f} {words} ({refusal.used:,.0f} now); "
        f"retry after {seconds} s.",
        code="rate_limit_exceeded",
        type="rate_limit_error",
        headers={"Retry-After": str(seconds)},
    )
