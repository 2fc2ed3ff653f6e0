"""PostgreSQL, when several replicas share one history: asyncpg's pool, every replica on one database.

SQL is written once, with ``?`` placeholders; here they become ``$1, $2, ...``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from app.conversations.database import (
    POSTGRES_ERRORS,
    DatabaseError,
    Queries,
    Row,
    SingleQueries,
    Statement,
    redact_url,
)
from providers.base import digits_value

PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    counter = iter(range(1, 1000))
    return PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def changed_rows(status: str) -> int:
    """asyncpg reports ``UPDATE 3``, ``INSERT 0 2`` or ``DELETE 1``: the last number is the row count."""
    last = status.rpartition(" ")[2]
    return digits_value(last) or 0


class PostgresDatabase(SingleQueries):
    """asyncpg's pool; every replica's gateway shares the one database."""

    def __init__(self, url: str, pool_size: int):
        self.url = url
        self.url_for_logs = redact_url(url)
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None
        self.sql: dict[str, str] = {}  # the numbered form of each statement, made once

    async def open(self) -> None:
        try:
            self.pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                command_timeout=30,
                timeout=10,
                reset=keep_session,
            )
        except (TimeoutError, *POSTGRES_ERRORS) as exc:
            raise DatabaseError(
                f"Cannot connect to the PostgreSQL conversation store at {self.url_for_logs}: {exc}. "
                "Check DATABASE_URL and that the server is running."
            ) from exc

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def statement(self, sql: str) -> str:
        found = self.sql.get(sql)
        if found is None:
            found = self.sql[sql] = numbered(sql)
        return found

    async def batch(self, statements: list[Statement], *, transaction: bool = False) -> list[tuple[list[Row], int]]:
        assert self.pool is not None, "the database is not open"
        try:
            async with self.pool.acquire() as connection:
                queries = PostgresTransaction(connection, self)
                if not transaction:
                    return [await queries.run(sql, args) for sql, args in statements]
                async with connection.transaction():
                    return [await queries.run(sql, args) for sql, args in statements]
        except POSTGRES_ERRORS as exc:
            raise DatabaseError(f"The PostgreSQL conversation store refused a query: {exc}.") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        assert self.pool is not None, "the database is not open"
        async with self.pool.acquire() as connection, connection.transaction():
            yield PostgresTransaction(connection, self)


class PostgresTransaction:
    def __init__(self, connection: Any, database: PostgresDatabase):
        self.connection = connection
        self.database = database

    async def run(self, sql: str, args: tuple[Any, ...]) -> tuple[list[Row], int]:
        """Rows for statements that return them (SELECT, RETURNING), else the changed-row count."""
        if sql.lstrip().startswith(("SELECT", "WITH")) or " RETURNING " in sql:
            rows = await self.fetch(sql, *args)
            return rows, len(rows)
        return [], await self.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            return [tuple(row) for row in await self.connection.fetch(self.database.statement(sql), *args)]
        except POSTGRES_ERRORS as exc:
            raise DatabaseError(f"The PostgreSQL conversation store refused a query: {exc}.") from exc

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            return changed_rows(await self.connection.execute(self.database.statement(sql), *args))
        except POSTGRES_ERRORS as exc:
            raise DatabaseError(f"The PostgreSQL conversation store refused a query: {exc}.") from exc


async def keep_session(connection: Any) -> None:
    """Returning a connection to the pool costs no round trip: the store leaves no session state behind
    (no LISTEN, no session advisory locks, no SET), so asyncpg's default reset query has nothing to undo."""
