from __future__ import annotations

from providers.balancer import Balancer, Cooldown, key_of
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


def attempt(balancer: Balancer, deployment: Deployment, failed: bool) -> None:
    balancer.started(deployment)
    balancer.finished(deployment, failed=failed)


def circuit(balancer: Balancer, deployment: Deployment) -> str:
    return dict(balancer.circuits())[key_of(deployment)]


def test_the_breaker_probes_one_request_at_a_time_and_closes_after_enough_answers() -> None:
    clock = Clock()
    balancer = Balancer(Cooldown(failures=1, seconds=30, probes=2), clock)
    attempt(balancer, A, failed=True)
    assert circuit(balancer, A) == "open"
    assert balancer.order([A, B], "fallback") == [B, A]  # served from the fallback while A is down

    clock.now += 31
    assert circuit(balancer, A) == "half_open"
    assert balancer.order([A, B], "fallback") == [A, B]  # this request is the probe
    assert balancer.order([A, B], "fallback") == [B, A]  # the others still go elsewhere meanwhile
    attempt(balancer, A, failed=True)  # the probe failed: another cool-down
    assert circuit(balancer, A) == "open"
    assert balancer.order([A, B], "fallback") == [B, A]

    clock.now += 31
    assert balancer.order([A, B], "fallback") == [A, B]
    attempt(balancer, A, failed=False)  # one answer of the two it takes
    assert circuit(balancer, A) == "half_open"
    assert balancer.order([A, B], "fallback") == [A, B]  # the next probe
    assert balancer.order([A, B], "fallback") == [B, A]
    attempt(balancer, A, failed=False)
    assert circuit(balancer, A) == "closed"
    assert [balancer.order([A, B], "fallback")[0] for _ in range(3)] == [A, A, A]  # all of them again


def test_a_probe_that_never_reports_back_frees_its_turn_after_a_cool_down() -> None:
    clock = Clock()
    balancer = Balancer(Cooldown(failures=1, seconds=30), clock)
    attempt(balancer, A, failed=True)
    clock.now += 31
    assert balancer.order([A, B], "fallback")[0] == A  # claimed, and its request went elsewhere
    clock.now += 10
    assert balancer.order([A, B], "fallback")[0] == B
    clock.now += 21
    assert balancer.order([A, B], "fallback")[0] == A
