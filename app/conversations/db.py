"""Two databases behind one small interface: SQLite on one machine, PostgreSQL when replicas share history.

SQL is written once, with ``?`` placeholders; the PostgreSQL side numbers them ``$1, $2, ...``.
SQLite runs on one thread of its own, so no query ever blocks the event loop; PostgreSQL goes
through asyncpg's pool.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg

T = TypeVar("T")
Row = tuple[Any, ...]
PLACEHOLDER = re.compile(r"\?")
# A refused query, a lost connection, a pool that cannot connect.
POSTGRES_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class DatabaseError(RuntimeError):
    """The conversation store cannot be reached or refused a query; the message says which and why."""


class Queries(Protocol):
    """What a connection, or a transaction on one, can do."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Runs a statement; returns how many rows it changed."""
        ...


class Database(Queries, Protocol):
    url_for_logs: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> Any:
        """``async with db.transaction() as tx``: tx's queries commit together, or none do."""
        ...


def open_database(url: str, pool_size: int = 10) -> Database:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:///:memory:`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, pool_size)
    scheme = url.partition(":")[0] or url
    raise DatabaseError(
        f"The conversation store's URL has the scheme {scheme[:40]!r}; use sqlite:///path/to/file.db or "
        "postgresql://user@host:5432/database (DATABASE_URL or conversations.database_url)."
    )


class SqliteDatabase:
    """One connection on one thread: WAL, so readers in other processes do not block the writer."""

    def __init__(self, path: str):
        self.path = path
        self.url_for_logs = f"sqlite:///{path}"
        self.executor: ThreadPoolExecutor | None = None
        self.connection: sqlite3.Connection | None = None
        self.lock: asyncio.Lock | None = None  # one transaction at a time on the one connection

    async def open(self) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self.lock = asyncio.Lock()
        try:
            self.connection = await self.call(self.connect)
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"Cannot open the SQLite conversation store {self.path!r}: {exc}.") from exc

    def connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit; transactions are explicit (BEGIN IMMEDIATE), so a writer takes its lock up front.
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of the process; WAL's usual pairing
        connection.execute("PRAGMA busy_timeout=5000")  # other worker processes share the file
        return connection

    async def close(self) -> None:
        if self.connection is not None:
            await self.call(self.connection.close)
            self.connection = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        assert self.executor is not None, "the database is not open"
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def run(self, sql: str, args: tuple[Any, ...]) -> tuple[list[Row], int]:
        assert self.connection is not None, "the database is not open"
        try:
            cursor = self.connection.execute(sql, args)
            return cursor.fetchall(), cursor.rowcount
        except sqlite3.Error as exc:
            raise DatabaseError(f"The SQLite conversation store refused a query: {exc}.") from exc

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        assert self.lock is not None, "the database is not open"
        async with self.lock:
            return (await self.call(self.run, sql, args))[0]

    async def execute(self, sql: str, *args: Any) -> int:
        assert self.lock is not None, "the database is not open"
        async with self.lock:
            return (await self.call(self.run, sql, args))[1]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        assert self.lock is not None, "the database is not open"
        async with self.lock:
            await self.call(self.run, "BEGIN IMMEDIATE", ())
            try:
                yield SqliteTransaction(self)
            except BaseException:
                await asyncio.shield(self.call(self.run, "ROLLBACK", ()))
                raise
            await self.call(self.run, "COMMIT", ())


class SqliteTransaction:
    """Queries inside a transaction, which already holds the connection's lock."""

    def __init__(self, database: SqliteDatabase):
        self.database = database

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return (await self.database.call(self.database.run, sql, args))[0]

    async def execute(self, sql: str, *args: Any) -> int:
        return (await self.database.call(self.database.run, sql, args))[1]


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    counter = iter(range(1, 1000))
    return PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def changed_rows(status: str) -> int:
    """asyncpg reports ``UPDATE 3``, ``INSERT 0 2`` or ``DELETE 1``: the last number is the row count."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class PostgresDatabase:
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
                self.url, min_size=1, max_size=self.pool_size, command_timeout=30, timeout=10
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

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        assert self.pool is not None, "the database is not open"
        async with self.pool.acquire() as connection:
            return await PostgresTransaction(connection, self).fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        assert self.pool is not None, "the database is not open"
        async with self.pool.acquire() as connection:
            return await PostgresTransaction(connection, self).execute(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        assert self.pool is not None, "the database is not open"
        async with self.pool.acquire() as connection, connection.transaction():
            yield PostgresTransaction(connection, self)


class PostgresTransaction:
    def __init__(self, connection: Any, database: PostgresDatabase):
        self.connection = connection
        self.database = database

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


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
