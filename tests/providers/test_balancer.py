from __future__ import annotations

from providers.balancer import Balancer, Cooldown
from providers.base import Deployment

A, B, C = Deployment("p", "a"), Deployment("p", "b"), Deployment("q", "c")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fallback_keeps_the_configured_order() -> None:
    assert Balancer().order([A, B, C], "fallback") == [A, B, C]


def test_round_robin_rotates_the_first_choice() -> None:
    balancer = Balancer()
    firsts = [balancer.order([A, B, C], "round_robin")[0] for _ in range(6)]
    assert firsts == [A, B, C, A, B, C]


def test_least_in_flight_prefers_the_idle_deployment() -> None:
    balancer = Balancer()
    balancer.started(A)
    balancer.started(A)
    balancer.started(B)
    assert balancer.order([A, B, C], "least_in_flight") == [C, B, A]
    balancer.finished(A, failed=False)
    balancer.finished(A, failed=False)
    assert balancer.order([A, B, C], "least_in_flight")[0] == A


def test_a_deployment_that_keeps_failing_cools_down_then_returns() -> None:
    clock = Clock()
    balancer = Balancer(Cooldown(failures=2, seconds=30), clock)
    for _ in range(2):
        balancer.started(A)
        balancer.finished(A, failed=True)
    assert balancer.order([A, B], "fallback") == [B, A]  # moved last, still tried if B fails too
    clock.now += 31
    assert balancer.order([A, B], "fallback") == [A, B]


def test_a_success_resets_the_failure_count() -> None:
    balancer = Balancer(Cooldown(failures=2, seconds=30))
    for failed in (True, False, True):
        balancer.started(A)
        balancer.finished(A, failed=failed)
    assert balancer.order([A, B], "fallback") == [A, B]
