"""Two gateway replicas behind nginx (Debian's, started on loopback from docs/nginx.conf), sharing the
machine's Redis and PostgreSQL: limits hold across both, conversations move between them, a replica
that drains finishes its streams, and one that is killed fails its stream honestly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.app.test_main import ROOT, free_port, wait_until_up

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is missing: `make nginx` installs Debian's")
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
TEAM = {"authorization": "Bearer gw-team"}
STREAM = {"model": "synthetic:delay_ms=40,tokens=60", "stream": True, "messages": [{"role": "user", "content": "go"}]}


class Cluster:
    def __init__(self, directory: Path, prefix: str):
        self.directory, self.prefix = directory, prefix
        self.config = directory / "gateway.yaml"
        self.config.write_text(
            f"limits: {{redis_prefix: {prefix}}}\n"
            "auth:\n"
            "  keys:\n"
            "    - {name: team, key: gw-team, rate_limits: {requests_per_minute: 20}}\n"
            "    - {name: free, key: gw-free}\n"
        )
        self.ports = [free_port(), free_port()]
        self.replicas = [self.replica(port) for port in self.ports]
        self.port = free_port()
        self.nginx = self.start_nginx()

    def replica(self, port: int) -> subprocess.Popen[bytes]:
        log = (self.directory / f"replica-{port}.log").open("wb")  # a file: a pipe left unread would fill
        env = {
            **os.environ,
            "PORT": str(port),
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": POSTGRES_URL,
            "GATEWAY_CONFIG": str(self.config),
        }
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=log, stderr=log)
        log.close()
        return process

    def start_nginx(self) -> subprocess.Popen[bytes]:
        shipped = (ROOT / "docs" / "nginx.conf").read_text()
        conf = (
            shipped.replace("127.0.0.1:8001", f"127.0.0.1:{self.ports[0]}")
            .replace("127.0.0.1:8002", f"127.0.0.1:{self.ports[1]}")
            .replace("listen 127.0.0.1:8000", f"listen 127.0.0.1:{self.port}")
            # which replica served, for the tests; the shipped config does not say
            .replace(
                "proxy_pass http://gateway;",
                "proxy_pass http://gateway;\n            add_header X-Upstream $upstream_addr always;",
            )
        )
        assert conf.count(str(self.port)) == 1, "docs/nginx.conf no longer has the ports the test replaces"
        path = self.directory / "nginx.conf"
        path.write_text(conf)
        globals_ = f"daemon off; pid {self.directory}/nginx.pid; error_log {self.directory}/nginx-error.log;"
        assert NGINX is not None
        return subprocess.Popen([NGINX, "-p", str(self.directory), "-c", str(path), "-g", globals_])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def direct(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def wait(self) -> None:
        for process, port in zip(self.replicas, self.ports, strict=True):
            wait_until_up(f"http://127.0.0.1:{port}/health", process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not answer: {(self.directory / 'nginx-error.log').read_text()}")

    def index_of(self, response: httpx.Response) -> int:
        return self.ports.index(int(response.headers["x-upstream"].rpartition(":")[2]))

    def stop(self) -> None:
        for process in [*self.replicas, self.nginx]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.replicas, self.nginx]:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck shutdown is its own failure
                process.kill()
                process.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    prefix = f"test-replicas-{uuid.uuid4().hex}"
    running = Cluster(tmp_path, prefix)
    try:
        running.wait()
        yield running
    finally:
        running.stop()
        store = redis.Redis.from_url(REDIS_URL)
        keys = list(store.scan_iter(match=f"{prefix}:*"))
        if keys:
            store.delete(*keys)
        store.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as http:
        yield http


async def test_a_keys_limit_holds_exactly_across_both_replicas(cluster: Cluster, client: httpx.AsyncClient) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    responses = await asyncio.gather(
        *(client.post(f"{cluster.url}/v1/chat/completions", json=body, headers=TEAM) for _ in range(50))
    )
    assert sorted(r.status_code for r in responses) == [200] * 20 + [429] * 30
    assert {cluster.index_of(r) for r in responses} == {0, 1}  # nginx spread them over both


async def test_a_conversation_continues_on_the_other_replica(cluster: Cluster, client: httpx.AsyncClient) -> None:
    created = await client.post(f"{cluster.direct(0)}/api/v1/conversations", json={}, headers=TEAM)
    conversation = created.json()["id"]

    async def say(index: int, words: str) -> None:
        body = {"model": "echo", "conversation_id": conversation, "messages": [{"role": "user", "content": words}]}
        answer = await client.post(f"{cluster.direct(index)}/v1/chat/completions", json=body, headers=TEAM)
        assert answer.status_code == 200

    await say(0, "first on one")
    await say(1, "then on the other")
    kept = (await client.get(f"{cluster.direct(1)}/api/v1/conversations/{conversation}", headers=TEAM)).json()
    said = [message["content"] for message in kept["messages"]]
    assert said == ["first on one", "first on one", "then on the other", "then on the other"]


async def stream_through(client: httpx.AsyncClient, url: str, started: asyncio.Future[int]) -> bytes:
    raw = b""
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=STREAM, headers=TEAM) as response:
            async for chunk in response.aiter_raw():
                raw += chunk
                if not started.done() and b'"content":"' in raw:
                    started.set_result(int(response.headers["x-upstream"].rpartition(":")[2]))
    except httpx.TransportError:
        raw += b"<broken>"
    return raw


async def a_stream_on_one(cluster: Cluster, client: httpx.AsyncClient) -> tuple[asyncio.Task[bytes], int]:
    """A stream through nginx, once its text flows, and which replica serves it."""
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    streaming = asyncio.ensure_future(stream_through(client, cluster.url, started))
    return streaming, cluster.ports.index(await asyncio.wait_for(started, 10))


async def all_served_by(cluster: Cluster, client: httpx.AsyncClient, times: int, replica: int) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    after = [await client.post(f"{cluster.url}/v1/chat/completions", json=body, headers=TEAM) for _ in range(times)]
    assert [r.status_code for r in after] == [200] * times
    assert {cluster.index_of(r) for r in after} == {replica}


async def test_a_draining_replica_finishes_its_streams_and_gets_no_new_requests(
    cluster: Cluster, client: httpx.AsyncClient
) -> None:
    streaming, victim = await a_stream_on_one(cluster, client)
    cluster.replicas[victim].send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    await all_served_by(cluster, client, 6, 1 - victim)
    raw = await asyncio.wait_for(streaming, 15)
    assert raw.endswith(b"data: [DONE]\n\n")  # the draining replica finished its stream


async def test_a_killed_replicas_stream_fails_honestly_while_new_requests_succeed(
    cluster: Cluster, client: httpx.AsyncClient
) -> None:
    streaming, victim = await a_stream_on_one(cluster, client)
    cluster.replicas[victim].kill()
    raw = await asyncio.wait_for(streaming, 15)
    assert not raw.endswith(b"data: [DONE]\n\n")  # never a clean ending
    assert raw.endswith(b"<broken>")  # the client's HTTP library sees the response cut short
    await all_served_by(cluster, client, 4, 1 - victim)
