"""Proxies for the native transport: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``,
as curl and httpx read them. An https upstream is reached through a CONNECT tunnel, then TLS to the
upstream itself; an http one by sending the request to the proxy with its absolute URL. Only plain
``http://`` proxies are supported: another scheme stops start-up with a message.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

Address = tuple[str, int]


class ProxyConfigError(ValueError):
    """A proxy variable the native transport cannot use."""


class Proxies:
    def __init__(self, environ: Mapping[str, str] = os.environ):
        def get(name: str) -> str:
            return environ.get(name.lower()) or environ.get(name.upper()) or ""

        fallback = get("all_proxy")
        self.by_scheme = {
            b"http": parse_proxy("HTTP_PROXY", get("http_proxy") or fallback),
            b"https": parse_proxy("HTTPS_PROXY", get("https_proxy") or fallback),
        }
        self.bypass = [entry.strip().lower().lstrip(".") for entry in get("no_proxy").split(",") if entry.strip()]

    def for_origin(self, scheme: bytes, host: str) -> Address | None:
        proxy = self.by_scheme.get(scheme)
        if proxy is None or self.bypassed(host.lower()):
            return None
        return proxy

    def bypassed(self, host: str) -> bool:
        return any(entry == "*" or host == entry or host.endswith("." + entry) for entry in self.bypass)


def parse_proxy(name: str, value: str) -> Address | None:
    if not value:
        return None
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme != "http" or not parts.hostname:
        raise ProxyConfigError(
            f"{name}={value!r}: http.transport native goes through plain http:// proxies only. Use an "
            "http:// proxy URL, or http.transport: aiohttp."
        )
    return parts.hostname, parts.port or 80


async def tunnel(
    protocol: asyncio.Protocol, proxy: Address, host: str, port: int, context: ssl.SSLContext
) -> asyncio.StreamWriter:
    """A CONNECT tunnel through ``proxy`` to ``host:port``, then TLS to it, handed to ``protocol``.

    The writer that opened it is returned for the caller to keep: a writer that is collected closes
    its transport, and with it the tunnel.
    """
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        writer.write(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host.encode(), port, host.encode(), port))
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
        if status != b"200":
            raise httpx.ProxyError(
                f"the proxy {proxy[0]}:{proxy[1]} refused a tunnel to {host}:{port} ({status.decode()})"
            )
        loop = asyncio.get_running_loop()
        secured = await loop.start_tls(writer.transport, writer.transport.get_protocol(), context, server_hostname=host)
    except BaseException:
        writer.close()
        raise
    assert secured is not None
    secured.set_protocol(protocol)
    protocol.connection_made(secured)
    return writer
