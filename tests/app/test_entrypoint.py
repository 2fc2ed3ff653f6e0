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
