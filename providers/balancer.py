"""Choosing among an alias's deployments: the strategy's order, in-flight counts, and a circuit
breaker per deployment.

- **Closed:** the deployment takes requests in the strategy's order.
- **Open:** after ``failures`` failures in a row it is moved last for ``seconds`` (still tried when
  every other deployment failed too), so its alias is served by the others while it is down.
- **Half-open:** once the cool-down is over, one request at a time is let through to it as a probe,
  while the others still go elsewhere. ``probes`` answers in a row close the circuit again; a
  failed probe opens it for another cool-down. A probe that never reports back (its request ended
  before it got there) frees its turn after a cool-down.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

import msgspec

from providers.base import Deployment

Strategy = Literal["fallback", "round_robin", "least_in_flight"]
Circuit = Literal["closed", "open", "half_open"]
Key = tuple[str, str, str]


class Cooldown(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    failures: Annotated[int, msgspec.Meta(ge=1)] = 3  # failures in a row that open the circuit
    seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # how long it stays open before a probe
    probes: Annotated[int, msgspec.Meta(ge=1)] = 1  # answered probes in a row that close it again


class Health:
    __slots__ = ("circuit", "cooled_until", "failures", "in_flight", "probe_since", "probed")

    def __init__(self) -> None:
        self.in_flight = 0
        self.failures = 0
        self.circuit: Circuit = "closed"
        self.cooled_until = 0.0
        self.probe_since: float | None = None  # when the probe in flight was let through
        self.probed = 0  # probes answered in a row while half-open


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
        """The deployments to try, in order: the strategy's, with those that should not be asked now last."""
        ordered = list(deployments)
        if strategy == "round_robin" and ordered:
            turn = next(self.turns) % len(ordered)
            ordered = ordered[turn:] + ordered[:turn]
        elif strategy == "least_in_flight":
            ordered.sort(key=lambda d: self.state(d).in_flight)
        now = self.clock()
        return sorted(ordered, key=lambda d: not self.admits(self.state(d), now))

    def admits(self, health: Health, now: float) -> bool:
        """Whether a request may go to it now; letting one through while half-open makes it the probe."""
        if health.circuit == "closed":
            return True
        if now < health.cooled_until:
            return False
        health.circuit = "half_open"
        if health.probe_since is not None and now - health.probe_since < self.cooldown.seconds:
            return False  # one probe at a time
        health.probe_since = now
        return True

    def is_open(self, deployment: Deployment) -> bool:
        """Whether its circuit is open: failures in a row opened it, or its probe failed, and it cools down."""
        return self.state(deployment).circuit == "open"

    def started(self, deployment: Deployment) -> None:
        self.state(deployment).in_flight += 1

    def finished(self, deployment: Deployment, *, failed: bool) -> None:
        health = self.state(deployment)
        health.in_flight -= 1
        if health.circuit != "closed":
            self.probe_over(health, failed)
        elif not failed:
            health.failures = 0
        else:
            health.failures += 1
            if health.failures >= self.cooldown.failures:
                self.open(health)

    def probe_over(self, health: Health, failed: bool) -> None:
        health.probe_since = None
        if failed:
            self.open(health)
            return
        health.probed += 1
        if health.probed >= self.cooldown.probes:
            health.circuit, health.failures, health.probed = "closed", 0, 0

    def open(self, health: Health) -> None:
        health.circuit, health.cooled_until = "open", self.clock() + self.cooldown.seconds
        health.failures = health.probed = 0

    def circuits(self) -> Iterator[tuple[Key, Circuit]]:
        """Each deployment's circuit as it stands now, for the metrics."""
        now = self.clock()
        for key, health in self.health.items():
            due = health.circuit == "open" and now >= health.cooled_until
            yield key, "half_open" if due else health.circuit
