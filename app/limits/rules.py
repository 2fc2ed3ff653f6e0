"""What a gateway key may do: its rate limits and budgets, and the price table that turns tokens into cost.

``auth.rate_limits`` and ``auth.budgets`` are every key's defaults; a key's own ``rate_limits`` and
``budgets`` override them field by field. Prices are per million tokens, by the model name clients
send or by ``provider/model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, TypeVar

import msgspec

from providers.base import Usage

Positive = Annotated[int, msgspec.Meta(ge=1)]
Money = Annotated[float, msgspec.Meta(ge=0)]


class RateLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    requests_per_minute: Positive | None = None
    tokens_per_minute: Positive | None = None  # input + output, as the upstream reports them
    concurrent_streams: Positive | None = None  # model calls in flight (each WebSocket chat is one)

    def over(self, defaults: RateLimits) -> RateLimits:
        """These limits, each unset one taken from ``defaults``."""
        return overlay(self, defaults)


class Budgets(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Spend per UTC day and per UTC calendar month, in tokens and in the price table's currency."""

    tokens_per_day: Positive | None = None
    tokens_per_month: Positive | None = None
    cost_per_day: Money | None = None
    cost_per_month: Money | None = None

    def over(self, defaults: Budgets) -> Budgets:
        return overlay(self, defaults)

    @property
    def any(self) -> bool:
        return any(value is not None for value in fields(self))


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per million tokens; cached input defaults to the input price."""

    input: Money = 0.0
    output: Money = 0.0
    cached_input: Money | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)  # the prompt count includes what was cached
        cached_price = self.input if self.cached_input is None else self.cached_input
        fresh = usage.prompt_tokens - cached
        return (fresh * self.input + cached * cached_price + usage.completion_tokens * self.output) / 1_000_000


FREE = Price()


class KeyRules(msgspec.Struct, frozen=True):
    """One key's limits and budgets, with the defaults filled in."""

    limits: RateLimits = RateLimits()
    budgets: Budgets = Budgets()

    @property
    def reserves(self) -> bool:
        """Whether a model call must ask the ledger before it goes upstream (else it is only counted after)."""
        return any(value is not None for value in fields(self.limits)) or self.budgets.any


class Prices:
    """The price of what a deployment served: its ``provider/model`` price, else the alias's; the price of
    a call not yet served: the alias's, else the dearest of its deployments (a reservation errs high)."""

    def __init__(self, table: Mapping[str, Price]):
        self.table = dict(table)

    def served(self, alias: str | None, deployment: str | None) -> Price:
        for name in (deployment, alias):
            if name is not None and name in self.table:
                return self.table[name]
        return FREE

    def before(self, alias: str, deployments: list[str]) -> Price:
        if alias in self.table:
            return self.table[alias]
        known = [self.table[name] for name in deployments if name in self.table]
        if not known:
            return FREE
        return max(known, key=lambda price: (price.output, price.input))


def fields(struct: msgspec.Struct) -> tuple[object, ...]:
    return tuple(getattr(struct, name) for name in struct.__struct_fields__)


S = TypeVar("S", RateLimits, Budgets)


def overlay(mine: S, defaults: S) -> S:
    """``mine``, with each field it leaves unset taken from ``defaults``."""
    changes = {name: getattr(mine, name) for name in mine.__struct_fields__ if getattr(mine, name) is not None}
    return msgspec.structs.replace(defaults, **changes)
