"""Every conversation test runs on both stores: SQLite always, PostgreSQL when one answers.

PostgreSQL is the server on 127.0.0.1:5432 (trust auth, database ``test``) unless TEST_DATABASE_URL
names another. Each test gets a schema of its own, dropped afterwards. When no server answers, the
tests skip and the run's summary says so in capitals.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from app.conversations.database import POSTGRES_ERRORS, redact_url

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
# Why PostgreSQL went untested, when it did: repeated at the end of the run where nobody can miss it.
POSTGRES_MISSING: set[str] = set()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in sorted(POSTGRES_MISSING):
        terminalreporter.write_sep("!", reason, red=True, bold=True)


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/conversations.db"
        return
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (*POSTGRES_ERRORS, TimeoutError) as exc:
        reason = f"PostgreSQL NOT TESTED: nothing usable answers at {redact_url(POSTGRES_URL)} ({exc})"
        POSTGRES_MISSING.add(reason)
        pytest.skip(reason)
    schema = f"gw_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
