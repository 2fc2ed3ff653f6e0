"""The machine's Redis going away and coming back, behind a TCP proxy on 127.0.0.1 that the test cuts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import structlog

from app.errors import ApiError
from app.limits.quotas import Quotas
from app.limits.redis_ledger import RedisLedger
from app.limits.rules import KeyRules, Prices, RateLimits

REDIS = ("127.0.0.1", 6379)


class Proxy:
    """Pipes each connection to Redis; ``cut`` drops them all and refuses new ones until ``restore``."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def restore(self) -> None:
        self.server = await asyncio.start_server(self.pipe, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*REDIS)
        self.writers |= {writer, upstream_writer}

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))
        self.writers -= {writer, upstream_writer}


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    running = Proxy()
    await running.restore()
    yield running
    if running.server is not None and running.server.is_serving():
        await running.cut()


def quotas(proxy: Proxy, *, fail_open: bool) -> Quotas:
    ledger = RedisLedger(f"redis://127.0.0.1:{proxy.port}/0", f"test-outage-{uuid.uuid4().hex}")
    rules = {"alice": KeyRules(RateLimits(requests_per_minute=2))}
    return Quotas(ledger, rules, KeyRules(), Prices({}), output_allowance=10, fail_open=fail_open, lease=60)


async def test_redis_going_away_fails_open_is_logged_once_and_the_limit_holds_again_after(proxy: Proxy) -> None:
    q = quotas(proxy, fail_open=True)
    assert await q.reserve("alice", "echo", [], 1, 1) is not None
    assert await q.reserve("alice", "echo", [], 1, 1) is not None
    with pytest.raises(ApiError):
        await q.reserve("alice", "echo", [], 1, 1)  # the limit, held in Redis
    with structlog.testing.capture_logs() as logs:
        await proxy.cut()
        assert await q.reserve("alice", "echo", [], 1, 1) is None  # served, without limits
        assert await q.reserve("alice", "echo", [], 1, 1) is None  # not asked again within the second
        await proxy.restore()
        await asyncio.sleep(1.1)
        with pytest.raises(ApiError) as info:
            await q.reserve("alice", "echo", [], 1, 1)  # reconnected: the minute's two are still counted
    assert info.value.code == "rate_limit_exceeded"
    assert [entry["event"] for entry in logs] == ["limits_store_unavailable", "limits_store_recovered"]
    await q.ledger.close()


async def test_failing_closed_refuses_while_redis_is_away(proxy: Proxy) -> None:
    q = quotas(proxy, fail_open=False)
    assert await q.reserve("alice", "echo", [], 1, 1) is not None
    await proxy.cut()
    with pytest.raises(ApiError) as info:
        await q.reserve("alice", "echo", [], 1, 1)
    assert (info.value.status, info.value.code) == (503, "limits_unavailable")
    await proxy.restore()
    await asyncio.sleep(1.1)
    assert await q.reserve("alice", "echo", [], 1, 1) is not None
    await q.ledger.close()
