"""Prometheus metrics, observed once per request where the access line is written, never per token.

With several worker processes, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
which ``python -m app`` sets up when WORKERS > 1) adds up every worker's values at scrape time.
Label values are bounded: unknown routes become ``other`` and unresolved models ``-``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, multiprocess

from providers.base import Usage

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUESTS = Counter("gateway_requests", "Requests answered", ["route", "model", "provider", "status", "key"])
TTFT = Histogram(
    "gateway_time_to_first_token_seconds",
    "Request start to first content",
    ["route", "provider"],
    buckets=LATENCY_BUCKETS,
)
DURATION = Histogram(
    "gateway_request_duration_seconds", "Request start to last byte", ["route", "provider"], buckets=LATENCY_BUCKETS
)
TOKENS = Counter("gateway_tokens", "Tokens in (prompt) and out (completion)", ["direction", "provider"])
ACTIVE = Gauge("gateway_active_streams", "Chat requests in flight", multiprocess_mode="livesum")
CIRCUIT = Gauge(
    "gateway_circuit_state",
    "Each deployment's circuit in this worker: 0 closed, 1 half-open (probing), 2 open (cooling down)",
    ["provider", "model"],
    multiprocess_mode="livemax",
)
CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
UPSTREAM_ERRORS = Counter("gateway_upstream_errors", "Failures that ended a request, by kind", ["provider", "kind"])
RETRIES = Counter("gateway_upstream_retries", "Retries of an upstream call, by what failed", ["provider", "kind"])
CANCELLED = Counter("gateway_cancelled_streams", "Requests the client left before the end", ["route", "phase"])
ROUTES: set[str] = set()  # filled from the spec at start-up
CHILDREN: dict[tuple[object, ...], Any] = {}  # each metric's labelled child, found once per label values


def child(metric: Counter | Histogram, *values: str) -> Any:
    """``metric.labels(*values)``, kept: labels() checks, converts and locks on every call, and it was
    most of what observing a request cost. The label values are bounded (see above), so is this."""
    found = CHILDREN.get((metric, *values))
    if found is None:
        found = CHILDREN[(metric, *values)] = metric.labels(*values)
    return found


def observe(
    path: str,
    status: int,
    model: str | None,
    provider: str | None,
    key: str | None,
    seconds: float,
    ttft_ms: float | None,
    usage: Usage | None,
    error: str | None,
    retry_kinds: list[str],
    cancelled: str | None,
) -> None:
    route = path if path in ROUTES else "other"
    who = provider or "-"
    child(REQUESTS, route, (model or "-") if provider else "-", who, str(status), key or "-").inc()
    child(DURATION, route, who).observe(seconds)
    if ttft_ms is not None:
        child(TTFT, route, who).observe(ttft_ms / 1000)
    if usage is not None:
        child(TOKENS, "in", who).inc(usage.prompt_tokens)
        child(TOKENS, "out", who).inc(usage.completion_tokens)
    if provider is not None and error is not None:
        child(UPSTREAM_ERRORS, who, error).inc()
    for kind in retry_kinds:
        child(RETRIES, who, kind).inc()
    if cancelled is not None:
        child(CANCELLED, route, cancelled).inc()


def circuits(states: Iterable[tuple[tuple[str, str, str], str]]) -> None:
    """Each deployment's circuit, read from the balancer when /metrics is scraped (not per request)."""
    for (provider, model, _), circuit in states:
        CIRCUIT.labels(provider, model).set(CIRCUIT_VALUES[circuit])


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def mark_process_dead() -> None:
    """A worker that stops takes its live gauges with it."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # untyped upstream
