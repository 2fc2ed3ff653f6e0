"""Streaming as a client sees it, from a real uvicorn on 127.0.0.1: chunks must arrive as produced."""

from __future__ import annotations

import itertools
import time

import httpx
import orjson

from tests.conftest import LiveServer

URL = "/v1/chat/completions"


async def read_events(server: LiveServer, body: dict[str, object]) -> list[tuple[float, bytes]]:
    """Each SSE event with the time it arrived, split from whatever reads the socket gave."""
    arrivals: list[tuple[float, bytes]] = []
    buffer = b""
    async with httpx.AsyncClient(base_url=server.url) as client, client.stream("POST", URL, json=body) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            arrivals += [(time.perf_counter(), event) for event in events]
    assert buffer == b""
    return arrivals


async def test_tokens_arrive_one_by_one_not_at_the_end(live_server: LiveServer) -> None:
    body = {
        "model": "synthetic:ttft_ms=0,delay_ms=60,tokens=6",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    arrivals = await read_events(live_server, body)
    content = [t for t, event in arrivals if b'"content":"' in event and b'"content":""' not in event]
    assert len(content) == 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(content)]
    # Produced 60 ms apart: a buffering relay would deliver them together, with gaps near zero.
    assert min(gaps) > 0.03, gaps


async def test_readme_curl_example_streams_hello_and_there_separately(live_server: LiveServer) -> None:
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "hello there"}]}
    events = [event for _, event in await read_events(live_server, body)]
    contents = [orjson.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert contents == ["", "hello", " there", None]
    assert events[-1] == b"data: [DONE]"


async def test_first_chunk_arrives_before_the_synthetic_answer_ends(live_server: LiveServer) -> None:
    body = {
        "model": "synthetic:ttft_ms=100,delay_ms=20,tokens=10",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    start = time.perf_counter()
    arrivals = await read_events(live_server, body)
    role_at, first_token_at, end_at = arrivals[0][0], arrivals[1][0], arrivals[-1][0]
    assert role_at - start < first_token_at - start  # headers and role go out before the model "thinks"
    assert first_token_at - start >= 0.1
    assert end_at - first_token_at >= 0.15
