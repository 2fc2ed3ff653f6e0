"""What the conversation store needs of a database: SQLite on one machine (``sqlite.py``) and
PostgreSQL when replicas share one history (``postgres.py``) both provide it. SQL is written once,
with ``?`` placeholders.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, TypeVar

import asyncpg

T = TypeVar("T")
Row = tuple[Any, ...]
Statement = tuple[str, tuple[Any, ...]]
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

    async def batch(self, statements: list[Statement], *, transaction: bool = False) -> list[tuple[list[Row], int]]:
        """Runs the statements in order, in one transaction if asked; each one's rows and changed-row count.

        The request path uses batches: on SQLite a batch is one trip to the database's thread, and
        under load every trip waits for a turn of the busy event loop, so trips are what cost.
        """
        ...

    def transaction(self) -> Any:
        """``async with db.transaction() as tx``: queries that depend on each other's answers (migrations)."""
        ...


class SingleQueries:
    """``fetch`` and ``execute`` as batches of one, for databases whose unit of work is the batch."""

    async def batch(self, statements: list[Statement], *, transaction: bool = False) -> list[tuple[list[Row], int]]:
        raise NotImplementedError

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return (await self.batch([(sql, args)]))[0][0]

    async def execute(self, sql: str, *args: Any) -> int:
        return (await self.batch([(sql, args)]))[0][1]


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
