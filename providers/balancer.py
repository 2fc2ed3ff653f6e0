"""Choosing among an alias's deployments: the strategy's order, in-flight counts, and cool-downs.

A deployment that fails ``failures`` times in a row is skipped for ``seconds`` (unless every
deployment is cooling down, when the least recently failed is tried anyway).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from providers.base import Deployment

Strategy = Literal["fallback", "round_robin", "least_in_flight"]
Key = tuple[str, str, str]


class Cooldown(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    failures: int = 3
    seconds: float = 30.0


class Health:
    __slots__ = ("cooled_until", "failures", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        self.failures = 0
        self.cooled_until = 0.0


def key_of(deployment: Deployment) -> Key:
    return (deployment.provider, deployment.model, deployment.api)


class Balancer:
    def __init__(self, cooldown: Cooldown | None = None, clock: Callable[[], float] = time.monotonic):
        self.cooldown = cooldown or Cooldown()
        self.clock = clock
        self.health: dict[Key, Health] = {}
        self.turns = itertools.count()

    def state(self, deployment: Deployment) -> Health:
        return self.health.setdefault(key_of(deployment), Health())

    def order(self, deployments: list[Deployment], strategy: Strategy) -> list[Deployment]:
        """The deployments to try, in order: the strategy's, with cooling ones moved last."""
        ordered = list(deployments)
        if strategy == "round_robin" and ordered:
            turn = next(self.turns) % len(ordered)
            ordered = ordered[turn:] + ordered[:turn]
        elif strategy == "least_in_flight":
            ordered.sort(key=lambda d: self.state(d).in_flight)
        now = self.clock()
        return sorted(ordered, key=lambda d: self.state(d).cooled_until > now)

    def started(self, deployment: Deployment) -> None:
        self.state(deployment).in_flight += 1

    def finished(self, deployment: Deployment, *, failed: bool) -> None:
        health = self.state(deployment)
        health.in_flight -= 1
        if not failed:
            health.failures = 0
            return
        health.failures += 1
        if health.failures >= self.cooldown.failures:
            health.cooled_until = self.clock() + self.cooldown.seconds
            health.failures = 0
