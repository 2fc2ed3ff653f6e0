"""The chat page's routes: the files, their headers, and that they load nothing from other sites."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import GatewayConfig
from app.http.auth import AuthSettings, GatewayKey
from tests.conftest import asgi_client, make_app

STATIC = Path(__file__).resolve().parents[3] / "app" / "http" / "static"


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")],
)
async def test_the_page_and_its_files_are_served_with_a_strict_policy(path: str, media_type: str) -> None:
    async with asgi_client(make_app()) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fpage.py", "%2E%2E"])
async def test_other_files_are_not_served(name: str) -> None:
    async with asgi_client(make_app()) as client:
        response = await client.get(f"/static/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_the_page_is_open_when_the_api_needs_a_key() -> None:
    config = GatewayConfig(auth=AuthSettings(keys=[GatewayKey("k", "secret-key")]))
    async with asgi_client(make_app(config=config)) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/static/app.js")).status_code == 200
        assert (await client.get("/v1/models")).status_code == 401


def test_nothing_is_loaded_from_other_sites() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path.name
        assert "@import" not in text, path.name
        assert "innerHTML" not in text, path.name  # model text is only ever set as text
