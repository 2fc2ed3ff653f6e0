"""``GET /`` and ``GET /static/{name}``: the chat page, served from ``app/static`` with no build step.

The Content-Security-Policy lets the page load nothing from other sites and run no inline script,
so even a bug that put model text into HTML could not run it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from app.errors import ApiError

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
ASSETS = {path.name: path for path in STATIC.iterdir() if path.suffix in TYPES}
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",  # revalidate, so an upgraded gateway serves its own page
}


async def get_chat_page(request: Request) -> Response:
    return asset("index.html")


async def get_static_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS or name == "index.html":
        raise ApiError(
            404,
            f"There is no static file {name[:100]!r}; the page is at /.",
            code="not_found",
            type="not_found_error",
        )
    return asset(name)


def asset(name: str) -> Response:
    path = ASSETS[name]
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)
