"""``python -m app``: bad settings stop it with a message; the metrics directory it makes is removed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app import __main__ as entrypoint


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []

    def fake_run(app: str, **options: Any) -> None:
        runs.append({"app": app, "metrics_dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR"), **options})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    # set, then delete: monkeypatch then restores the variable's absence after main() sets it
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    return runs


def test_workers_share_a_metrics_directory_that_is_removed_on_exit(
    no_server: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERS", "2")
    assert entrypoint.main() == 0
    [run] = no_server
    assert run["workers"] == 2
    assert run["metrics_dir"] is not None
    assert not Path(run["metrics_dir"]).exists()


def test_a_users_metrics_directory_is_left_alone(
    no_server: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKERS", "2")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert entrypoint.main() == 0
    assert no_server[0]["metrics_dir"] == str(tmp_path)
    assert tmp_path.exists()


def test_one_worker_needs_no_metrics_directory(
    no_server: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERS", "1")
    assert entrypoint.main() == 0
    assert no_server[0]["metrics_dir"] is None


def test_a_bad_setting_stops_start_up_with_a_message(
    no_server: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKERS", "many")
    assert entrypoint.main() == 2
    assert no_server == []
    assert "WORKERS" in capsys.readouterr().err


LIMITED = "auth:\n  keys: [{name: alice, key: k1}]\n  rate_limits: {requests_per_minute: 60}\n"


@pytest.mark.parametrize(
    ("workers", "redis", "config", "starts"),
    [
        ("2", None, LIMITED, False),  # each worker would count alone: every key gets twice its limit
        ("2", "redis://127.0.0.1:6379/0", LIMITED, True),
        ("1", None, LIMITED, True),
        ("2", None, "auth:\n  keys: [{name: alice, key: k1}]\n", True),  # keys without limits
        ("2", None, "auth:\n  keys: [{name: alice, key: k1, budgets: {tokens_per_day: 9}}]\n", False),
    ],
)
def test_several_workers_with_limits_need_redis(
    no_server: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    workers: str,
    redis: str | None,
    config: str,
    starts: bool,
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(config)
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    monkeypatch.setenv("WORKERS", workers)
    if redis is None:
        monkeypatch.delenv("REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("REDIS_URL", redis)
    assert entrypoint.main() == (0 if starts else 2)
    assert bool(no_server) is starts
    if not starts:
        message = capsys.readouterr().err
        assert f"WORKERS={workers}" in message
        assert "REDIS_URL" in message


def test_a_proxy_the_native_transport_cannot_use_stops_start_up(
    no_server: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("http: {transport: native}\n")
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    assert entrypoint.main() == 2
    assert not no_server
    assert "plain http:// proxies only" in capsys.readouterr().err
