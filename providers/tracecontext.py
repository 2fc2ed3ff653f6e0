"""The W3C trace context of the call in flight, for the upstream request's headers.

Set by the gateway (``app.ops.tracing``) around each upstream attempt: the attempt's span when
traces are on, else the client's own ``traceparent`` as it came; read once per upstream request.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

import httpx

TRACE_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar("trace_headers", default=None)


def with_trace_context(request: httpx.Request) -> httpx.Request:
    headers = TRACE_HEADERS.get()
    if headers:
        request.headers.update(headers)
    return request
