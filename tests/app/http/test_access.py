from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from providers.base import Finish, Start, TextDelta, Usage
from tests.conftest import asgi_client, make_app
from tests.fakes import ScriptedProvider

HELLO = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}


def access_lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The JSON access-log lines written to stdout so far."""
    lines = [orjson.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "request"]


@pytest.mark.parametrize("request_id", ["abc-123", "trace.id:7_X", "a" * 128])
async def test_a_sane_client_request_id_is_kept(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/health", headers={"x-request-id": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize("request_id", ["", "a" * 129, "has space", "semi;colon", "ünï"])
async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/health", headers=[(b"x-request-id", request_id.encode())])
    assert response.headers["x-request-id"] != request_id
    assert len(response.headers["x-request-id"]) == 32


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("PUT", "/health"), ("GET", "/v1/models")])
async def test_every_response_carries_one_request_id(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert len(response.headers.get_list("x-request-id")) == 1


async def test_unknown_route_is_404_in_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere", headers={"x-request-id": "r1"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "There is no route /nowhere. GET /openapi.yaml lists every route of this API.",
        "type": "not_found_error",
        "code": "not_found",
        "param": None,
        "request_id": "r1",
    }


async def test_one_access_log_line_per_stream_with_ttft_and_chunks(capfd: pytest.CaptureFixture[str]) -> None:
    provider = ScriptedProvider([Start(), TextDelta("a"), TextDelta("b"), Usage(1, 2), Finish("stop")])
    async with asgi_client(make_app([provider])) as client:
        capfd.readouterr()
        await client.post(
            "/v1/chat/completions", json={**HELLO, "model": "fake", "stream": True}, headers={"x-request-id": "req-1"}
        )
    [line] = access_lines(capfd)
    assert line["request_id"] == "req-1"
    assert line["level"] == "info"
    assert "timestamp" in line
    assert line["method"] == "POST"
    assert line["path"] == "/v1/chat/completions"
    assert line["status"] == 200
    assert line["model"] == "fake"
    assert line["chunks"] == 4  # role, a, b, finish
    assert line["ttft_ms"] >= 0
    assert line["duration_ms"] >= line["ttft_ms"]


async def test_access_log_records_errors_and_binds_the_request_id(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    await client.post("/v1/chat/completions", json={**HELLO, "model": "nope"}, headers={"x-request-id": "req-2"})
    [line] = access_lines(capfd)
    assert line["request_id"] == "req-2"
    assert line["status"] == 404
    assert line["model"] == "nope"
    assert "ttft_ms" not in line


async def test_a_failed_stream_is_logged_with_its_error_code(capfd: pytest.CaptureFixture[str]) -> None:
    provider = ScriptedProvider([Start(), TextDelta("a")])
    async with asgi_client(make_app([provider])) as client:
        capfd.readouterr()
        await client.post("/v1/chat/completions", json={**HELLO, "model": "fake", "stream": True})
    [line] = access_lines(capfd)
    assert line["error"] == "stream_truncated"
    assert line["chunks"] == 2


async def test_the_logged_model_name_is_bounded(client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    await client.post("/v1/chat/completions", json={**HELLO, "model": "m" * 50_000, "n": 2})
    [line] = access_lines(capfd)
    assert line["status"] == 400
    assert line["model"] == "m" * 200


async def test_the_access_line_accounts_for_usage(capfd: pytest.CaptureFixture[str]) -> None:
    provider = ScriptedProvider([Start(), TextDelta("a"), TextDelta("b"), Usage(11, 22, 3, 4), Finish("length")])
    async with asgi_client(make_app([provider])) as client:
        capfd.readouterr()
        await client.post("/v1/chat/completions", json={**HELLO, "model": "fake", "stream": True})
    [line] = access_lines(capfd)
    assert (line["provider"], line["upstream_model"], line["deployment"]) == ("fake", "fake", "fake/fake")
    assert (line["prompt_tokens"], line["completion_tokens"]) == (11, 22)
    assert (line["cached_tokens"], line["reasoning_tokens"]) == (3, 4)
    assert line["finish_reason"] == "length"
    assert line["tokens_per_second"] > 0
    assert (line["retries"], line["fallback"], line["cancelled"]) == (0, False, False)
