"""The store on both databases: schema, pages, messages, leases and the turn's append."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from app.conversations import records
from app.conversations.database import DatabaseError
from app.conversations.engines import open_database
from app.conversations.records import MIGRATIONS, Conversation, NewMessage
from app.conversations.store import ConversationStore, CursorError, decode_cursor


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ConversationStore]:
    database = open_database(database_url)
    await database.open()
    store = ConversationStore(database)
    await store.migrate()
    yield store
    await database.close()


def conversation(number: int, title: str | None = None) -> Conversation:
    return Conversation(f"conv_{number:04d}", title, {"n": str(number)}, 1_000_000 + number // 2, 1_000_000, 0)


def message(text: str, role: str = "user") -> NewMessage:
    return NewMessage(role, b'{"role":"%s","content":"%s"}' % (role.encode(), text.encode()))


async def test_migrating_twice_changes_nothing(store: ConversationStore) -> None:
    await store.create(conversation(1), "")
    await store.migrate()
    assert await store.get("conv_0001", "") is not None
    rows = await store.db.fetch("SELECT version FROM gateway_schema")
    assert rows == [(len(MIGRATIONS),)]


async def test_a_store_made_by_an_older_gateway_gains_the_newer_tables_and_keeps_its_conversations(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = ConversationStore(open_database(database_url))
    await older.db.open()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(records, "MIGRATIONS", MIGRATIONS[:1])
            patch.setattr("app.conversations.store.MIGRATIONS", MIGRATIONS[:1])
            await older.migrate()
        await older.create(conversation(1), "")
        await older.migrate()  # the newer gateway starts on the same database
        assert await older.get("conv_0001", "") is not None
        assert await older.db.fetch("SELECT version FROM gateway_schema") == [(len(MIGRATIONS),)]
        assert await older.db.fetch("SELECT id FROM responses") == []
    finally:
        await older.db.close()


async def test_gateways_starting_together_migrate_once(database_url: str) -> None:
    databases = [open_database(database_url) for _ in range(3)]
    for database in databases:
        await database.open()
    try:
        await asyncio.gather(*(ConversationStore(d).migrate() for d in databases))
        assert await databases[0].fetch("SELECT version FROM gateway_schema") == [(len(MIGRATIONS),)]
    finally:
        for database in databases:
            await database.close()


async def test_pages_are_newest_first_and_never_skip_or_repeat(store: ConversationStore) -> None:
    for number in range(7):  # pairs share a creation time, so the id breaks ties
        await store.create(conversation(number), "alice")
    await store.create(conversation(99), "bob")
    seen, cursor = [], None
    while True:
        page, cursor = await store.newest("alice", 3, cursor)
        seen += [c.id for c in page]
        if cursor is None:
            break
    assert seen == [f"conv_{n:04d}" for n in (6, 5, 4, 3, 2, 1, 0)]


async def test_a_cursor_it_did_not_make_is_refused() -> None:
    with pytest.raises(CursorError):
        decode_cursor("not-a-cursor")
    assert decode_cursor("123.conv_x") == (123, "conv_x")


async def test_metadata_and_title_round_trip(store: ConversationStore) -> None:
    await store.create(Conversation("conv_m", "Trip", {"project": "travel", "é": "ü"}, 5, 5, 0), "")
    found = await store.get("conv_m", "")
    assert found == Conversation("conv_m", "Trip", {"project": "travel", "é": "ü"}, 5, 5, 0)


async def test_a_conversation_is_invisible_to_other_owners(store: ConversationStore) -> None:
    await store.create(conversation(1), "alice")
    assert await store.get("conv_0001", "bob") is None
    assert (await store.take("conv_0001", "bob", "t", 0.0, 60, 0))[0] == "missing"
    assert not await store.delete("conv_0001", "bob")
    assert await store.get("conv_0001", "alice") is not None


async def test_a_lease_is_exclusive_until_released_or_expired(store: ConversationStore) -> None:
    await store.create(conversation(1), "")
    assert (await store.take("conv_0001", "", "one", 100.0, 60, 0))[0] == "acquired"
    assert (await store.take("conv_0001", "", "two", 130.0, 60, 0))[0] == "busy"
    assert await store.renew("on", 200.0) == 1  # "one" starts with "on"; its lease now runs to 200
    assert (await store.take("conv_0001", "", "two", 170.0, 60, 0))[0] == "busy"
    assert (await store.take("conv_0001", "", "two", 201.0, 60, 0))[0] == "acquired"  # expired: a dead gateway's lease
    await store.release("conv_0001", "one")  # a stale holder cannot release the new lease
    assert (await store.take("conv_0001", "", "three", 202.0, 60, 0))[0] == "busy"
    await store.release("conv_0001", "two")
    assert (await store.take("conv_0001", "", "three", 203.0, 60, 0))[0] == "acquired"
    assert (await store.take("conv_nope", "", "x", 0.0, 60, 0))[0] == "missing"


async def test_taking_a_conversation_reads_its_history_only_under_the_lease(store: ConversationStore) -> None:
    await store.create(conversation(1), "")
    await store.append("conv_0001", "t", [message("one"), message("two"), message("three")], 1.0, None)
    outcome, history = await store.take("conv_0001", "", "mine", 2.0, 60, 2)
    assert (outcome, [m.seq for m in history]) == ("acquired", [1, 2])
    assert await store.take("conv_0001", "", "other", 3.0, 60, 2) == ("busy", [])


async def test_append_numbers_messages_titles_and_releases(store: ConversationStore) -> None:
    await store.create(conversation(1), "")
    (await store.take("conv_0001", "", "tok", 0.0, 60, 0))[0]
    assert await store.append("conv_0001", "tok", [message("hi"), message("hello", "assistant")], 10.0, "hi there")
    (await store.take("conv_0001", "", "tok2", 11.0, 60, 0))[0]
    assert await store.append("conv_0001", "tok2", [message("again"), message("yes", "assistant")], 12.0, "ignored")
    found = await store.get("conv_0001", "")
    assert found is not None
    assert (found.title, found.message_count, found.updated_us) == ("hi there", 4, 12_000_000)
    assert [m.seq for m in await store.messages("conv_0001", -1, 10)] == [0, 1, 2, 3]
    assert [m.seq for m in await store.messages("conv_0001", 1, 10)] == [2, 3]
    assert [m.seq for m in await store.recent("conv_0001", 3)] == [1, 2, 3]
    assert (await store.take("conv_0001", "", "tok3", 13.0, 60, 0))[0] == "acquired"  # append released tok2


async def test_append_keeps_answers_details(store: ConversationStore) -> None:
    await store.create(conversation(1), "")
    answer = NewMessage(
        "assistant",
        b'{"role":"assistant","content":"par"}',
        incomplete=True,
        reasoning="thinking",
        model="openai/gpt-5",
        usage=b'{"prompt_tokens":3}',
        error="upstream_error",
    )
    await store.append("conv_0001", "t", [answer], 1.0, None)
    (kept,) = await store.messages("conv_0001", -1, 10)
    assert (kept.incomplete, kept.reasoning, kept.model, kept.error) == (
        True,
        "thinking",
        "openai/gpt-5",
        "upstream_error",
    )
    assert bytes(kept.usage) == b'{"prompt_tokens":3}'  # type: ignore[arg-type]
    assert bytes(kept.body) == b'{"role":"assistant","content":"par"}'


async def test_append_to_a_deleted_conversation_stores_nothing(store: ConversationStore) -> None:
    await store.create(conversation(1), "")
    assert await store.delete("conv_0001", "")
    assert not await store.append("conv_0001", "t", [message("hi")], 1.0, None)
    assert await store.messages("conv_0001", -1, 10) == []


async def test_delete_removes_the_messages_too(store: ConversationStore) -> None:
    await store.create(conversation(1), "")
    await store.append("conv_0001", "t", [message("hi")], 1.0, None)
    assert await store.delete("conv_0001", "")
    assert await store.get("conv_0001", "") is None
    assert await store.db.fetch("SELECT count(*) FROM messages") == [(0,)]


async def test_a_failed_transaction_leaves_nothing_behind(store: ConversationStore) -> None:
    await store.create(conversation(1), "")

    async def change_then_fail() -> None:
        async with store.db.transaction() as tx:
            await tx.execute("UPDATE conversations SET title = ? WHERE id = ?", "changed", "conv_0001")
            await tx.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(DatabaseError):
        await change_then_fail()
    found = await store.get("conv_0001", "")
    assert found is not None
    assert found.title is None


async def test_an_unknown_url_scheme_is_refused_with_both_forms_named() -> None:
    with pytest.raises(DatabaseError, match=re.escape("sqlite:///path/to/file.db or postgresql://")):
        open_database("mysql://root@localhost/db")


async def test_an_unreachable_postgres_is_a_clear_error_without_the_password() -> None:
    database = open_database("postgresql://user:hunter2@127.0.0.1:1/db")
    with pytest.raises(DatabaseError, match="Cannot connect") as caught:
        await database.open()
    assert "hunter2" not in str(caught.value)
    assert "user:***@" in str(caught.value)


def test_a_cursor_beyond_64_bits_is_refused() -> None:
    with pytest.raises(CursorError):
        decode_cursor("10000000000000000000.conv_x")  # found by schemathesis: SQLite and PostgreSQL refused it
