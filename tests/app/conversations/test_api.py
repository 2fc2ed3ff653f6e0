"""The /api/v1/conversations routes: create, list, read, delete, and every client mistake."""

from __future__ import annotations

import pytest

from tests.app.conversations.helpers import RecordingProvider, ask, gateway_app, new_conversation, serving


async def test_create_read_and_delete(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        created = await client.post("/api/v1/conversations", json={"title": "Trip", "metadata": {"project": "travel"}})
        assert created.status_code == 201
        body = created.json()
        assert created.headers["location"] == f"/api/v1/conversations/{body['id']}"
        assert body["id"].startswith("conv_")
        assert (body["object"], body["title"], body["metadata"], body["message_count"]) == (
            "conversation",
            "Trip",
            {"project": "travel"},
            0,
        )
        read = await client.get(f"/api/v1/conversations/{body['id']}")
        assert read.json() == {**body, "messages": [], "next_cursor": None}
        assert (await client.delete(f"/api/v1/conversations/{body['id']}")).status_code == 204
        gone = await client.get(f"/api/v1/conversations/{body['id']}")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "conversation_not_found"
        assert gone.json()["error"]["request_id"] == gone.headers["x-request-id"]
        assert (await client.delete(f"/api/v1/conversations/{body['id']}")).status_code == 404


async def test_the_body_is_optional_and_the_first_message_becomes_the_title(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        created = await client.post("/api/v1/conversations")
        assert created.status_code == 201
        assert (created.json()["title"], created.json()["metadata"]) == (None, {})
        conversation = created.json()["id"]
        await ask(client, conversation, "  Plan a   trip\nto Oslo  ")
        await ask(client, conversation, "and back")
        read = (await client.get(f"/api/v1/conversations/{conversation}")).json()
        assert (read["title"], read["message_count"]) == ("Plan a trip to Oslo", 4)
        assert read["updated_at"] >= read["created_at"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"title": 5}', 400, "invalid_type"),
        (b'{"colour": "red"}', 400, "invalid_value"),
        (b'{"metadata": {"k": 1}}', 400, "invalid_type"),
        (b'{"title": "' + b"x" * 300 + b'"}', 400, "invalid_value"),
        (b"{not json", 400, "invalid_json"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_problem(
    database_url: str, monkeypatch: pytest.MonkeyPatch, body: bytes, status: int, code: str
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        response = await client.post(
            "/api/v1/conversations", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_too_much_metadata_and_the_wrong_media_type_are_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        many = await client.post("/api/v1/conversations", json={"metadata": {str(i): "v" for i in range(17)}})
        assert (many.status_code, many.json()["error"]["param"]) == (400, "metadata")
        text = await client.post("/api/v1/conversations", content=b"title=x", headers={"content-type": "text/plain"})
        assert text.status_code == 415


async def test_listing_pages_through_every_conversation_newest_first(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        made = [await new_conversation(client, title=f"c{i}") for i in range(5)]
        seen, params = [], {"limit": "2"}
        while True:
            page = (await client.get("/api/v1/conversations", params=params)).json()
            assert page["object"] == "list"
            assert len(page["data"]) <= 2
            seen += [c["id"] for c in page["data"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == made[::-1]
        assert len((await client.get("/api/v1/conversations")).json()["data"]) == 5


async def test_messages_come_a_page_at_a_time_oldest_first(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        conversation = await new_conversation(client)
        for text in ("one", "two", "three"):
            await ask(client, conversation, text)
        contents, params = [], {"limit": "4"}
        while True:
            page = (await client.get(f"/api/v1/conversations/{conversation}", params=params)).json()
            contents += [m["content"] for m in page["messages"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert contents == ["one", "answer 1", "two", "answer 2", "three", "answer 3"]


@pytest.mark.parametrize(
    ("query", "messages_query", "param"),
    [
        ("limit=0", "limit=0", "limit"),
        ("limit=101", "limit=501", "limit"),
        ("limit=%C2%B2", "limit=%C2%B2", "limit"),
        ("cursor=", "cursor=", "cursor"),
        ("cursor=made-up", "cursor=-5", "cursor"),
    ],
)
async def test_bad_paging_parameters_are_400s(
    database_url: str, monkeypatch: pytest.MonkeyPatch, query: str, messages_query: str, param: str
) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        response = await client.get(f"/api/v1/conversations?{query}")
        conversation = await new_conversation(client)
        on_messages = await client.get(f"/api/v1/conversations/{conversation}?{messages_query}")
    assert (response.status_code, response.json()["error"]["param"]) == (400, param)
    assert (on_messages.status_code, on_messages.json()["error"]["param"]) == (400, param)


async def test_405_lists_every_method_of_the_path(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        response = await client.put("/api/v1/conversations/conv_x")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}


async def test_a_body_of_whitespace_is_not_taken_as_empty(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by schemathesis, twice: a body that is only whitespace ("\r", "\x0b") is not JSON."""
    async with serving(gateway_app(database_url, monkeypatch, RecordingProvider())) as client:
        empty = await client.post("/api/v1/conversations", content=b"", headers={"content-type": "application/json"})
        refused = [
            await client.post("/api/v1/conversations", content=body, headers={"content-type": "application/json"})
            for body in (b" \r\n\t", b"\r", b"\x0b")
        ]
    assert empty.status_code == 201
    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [(400, "invalid_json")] * 3
