"""The conversation store's database, named by a URL."""

from __future__ import annotations

from app.conversations.database import Database, DatabaseError
from app.conversations.postgres import PostgresDatabase
from app.conversations.sqlite import SqliteDatabase


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
