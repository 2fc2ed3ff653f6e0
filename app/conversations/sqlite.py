"""SQLite for one machine: one connection on one thread of its own, so no query blocks the event loop.

Trips to the thread are what cost under load: each one wakes the thread and then the busy event loop.
So the thread takes every job that is waiting at once and hands all their results back in one
wake-up of the loop, and a job is a whole batch of statements (a turn's lease and history, or a
turn's messages) rather than one statement.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from app.conversations.database import DatabaseError, Queries, Row, SingleQueries, Statement

T = TypeVar("T")


class Job:
    __slots__ = ("args", "function", "future", "loop")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]):
        self.function, self.args = function, args
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()


Done = list[tuple[Job, Any, BaseException | None]]


class SqliteDatabase(SingleQueries):
    """WAL mode, so readers in other worker processes do not block the writer."""

    def __init__(self, path: str):
        self.path = path
        self.url_for_logs = f"sqlite:///{path}"
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.connection: sqlite3.Connection | None = None
        # Held by a multi-trip transaction (migrations), so no other statement runs inside it.
        self.lock: asyncio.Lock | None = None

    async def open(self) -> None:
        self.lock = asyncio.Lock()
        self.thread = threading.Thread(target=self.work, name="sqlite", daemon=True)
        self.thread.start()
        try:
            self.connection = await self.call(self.connect)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
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
        if self.thread is not None:
            self.jobs.put(None)
            await asyncio.to_thread(self.thread.join)
            self.thread = None

    def work(self) -> None:
        """The thread: run every waiting job, then wake each loop once with all of its results."""
        while True:
            job = self.jobs.get()
            done: Done = []
            while job is not None:
                try:
                    done.append((job, job.function(*job.args), None))
                except BaseException as exc:
                    done.append((job, None, exc))
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
            for loop in {job.loop for job, _, _ in done}:
                loop.call_soon_threadsafe(deliver, [entry for entry in done if entry[0].loop is loop])
            if job is None:
                return

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        assert self.thread is not None, "the database is not open"
        job = Job(function, args)
        self.jobs.put(job)
        result: T = await job.future
        return result

    def run(self, sql: str, args: tuple[Any, ...]) -> tuple[list[Row], int]:
        assert self.connection is not None, "the database is not open"
        try:
            cursor = self.connection.execute(sql, args)
            return cursor.fetchall(), cursor.rowcount
        except sqlite3.Error as exc:
            raise DatabaseError(f"The SQLite conversation store refused a query: {exc}.") from exc

    def run_batch(self, statements: list[Statement], transaction: bool) -> list[tuple[list[Row], int]]:
        if not transaction:
            return [self.run(sql, args) for sql, args in statements]
        self.run("BEGIN IMMEDIATE", ())
        try:
            results = [self.run(sql, args) for sql, args in statements]
        except BaseException:
            self.run("ROLLBACK", ())
            raise
        self.run("COMMIT", ())
        return results

    async def batch(self, statements: list[Statement], *, transaction: bool = False) -> list[tuple[list[Row], int]]:
        assert self.lock is not None, "the database is not open"
        if self.lock.locked():  # a migration is under way on the one connection: after it
            async with self.lock:
                pass
        return await self.call(self.run_batch, statements, transaction)

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


def deliver(done: Done) -> None:
    """On the loop: each job's result or error to whoever awaits it (unless they stopped waiting)."""
    for job, result, error in done:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


class SqliteTransaction:
    """Queries inside a transaction, which already holds the connection's lock."""

    def __init__(self, database: SqliteDatabase):
        self.database = database

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return (await self.database.call(self.database.run, sql, args))[0]

    async def execute(self, sql: str, *args: Any) -> int:
        return (await self.database.call(self.database.run, sql, args))[1]
