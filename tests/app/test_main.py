"""``python -m app`` as a user runs it: a real process honouring HOST, PORT, LOG_LEVEL and GATEWAY_CONFIG."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_gateway(**env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1].decode())
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the gateway did not start within 15 s")


@contextmanager
def gateway_process(directory: Path, config: str, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m app`` on a free port with ``config`` as its file, once it answers; killed after if still up."""
    path = directory / "gateway.yaml"
    path.write_text(config)
    port = free_port()
    process = run_gateway(PORT=str(port), GATEWAY_CONFIG=str(path), **env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture
def configured_gateway(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    config = tmp_path / "gateway.yaml"
    config.write_text("models:\n  house-model: {provider: simulated, model: '${HOUSE_MODEL:-echo}'}\n")
    port = free_port()
    process = run_gateway(HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="info", GATEWAY_CONFIG=str(config))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", process)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serves_on_the_port_from_the_environment_with_the_config(
    configured_gateway: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = configured_gateway
    models = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
    answer = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "house-model", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert "house-model" in models
    assert answer.json()["choices"][0]["message"]["content"] == "hi"
    process.terminate()
    out, _ = process.communicate(timeout=10)
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    assert any(line.get("event") == "request" and line.get("model") == "house-model" for line in lines)
    assert all("level" in line and "timestamp" in line for line in lines)  # uvicorn's lines are JSON too


def test_workers_run_as_separate_processes_behind_one_port() -> None:
    port = free_port()
    process = run_gateway(PORT=str(port), WORKERS="2")
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", process)
        answers = [
            httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
            )
            for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [200] * 4
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=15)
    started = [line for line in out.splitlines() if b"Started server process" in line]
    assert len(started) == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT must be a whole number"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of"),
        ({"GATEWAY_CONFIG": "/nonexistent/gateway.yaml"}, "cannot be read"),
    ],
)
def test_bad_settings_stop_start_up_with_a_message(env: dict[str, str], message: str) -> None:
    process = run_gateway(**env)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 2
    assert message in err.decode()
    assert "Traceback" not in err.decode()
