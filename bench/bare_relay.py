"""The floor: a bare byte relay (uvicorn + aiohttp, no parsing, no routing) in front of the upstream.

Whatever this adds to time to first token is the cost of the Python stack itself on this machine;
the gateway's own cost is what it adds beyond this.

    UPSTREAM=http://127.0.0.1:9200 PORT=9300 python -m bench.bare_relay
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import uvicorn

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9200")


class BareRelay:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4096))
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        headers = {"content-type": "application/json"}
        async with self.session.post(f"{UPSTREAM}/v1/chat/completions", data=body, headers=headers) as upstream:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "9300"))
    uvicorn.run(
        BareRelay(), host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )
