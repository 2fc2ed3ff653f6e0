"""The one error envelope, OpenAI-shaped so SDKs parse it, and the one place it becomes an HTTP response.

Every error names what happened, why, and what to do, and carries the request id. ``error_response``
is the only writer of an HTTP error: Starlette's exception handlers, the auth middleware and the
exchange (before its status is committed) all go through it, or through the route's dialect's own
writer where its clients parse another envelope. In a stream, each dialect frames the error as its
own error event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from providers.base import ProviderError

REQUEST_ID_KEY = "gateway.request_id"
ERROR_WRITER_KEY = "gateway.error_writer"  # in the scope: how this route's errors are written
log = structlog.get_logger("gateway")


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    code: str | None
    param: str | None
    request_id: str


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


ENCODER = msgspec.json.Encoder()
JSON = "application/json"


class ApiError(Exception):
    """A client mistake or a gateway-level refusal, with the status and code the client sees."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.param = param
        self.headers = headers or {}

    @classmethod
    def from_provider(cls, exc: ProviderError) -> ApiError:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
        return cls(exc.status, exc.message, code=exc.code, type=exc.type, param=exc.param, headers=headers)

    def body(self, request_id: str) -> ErrorBody:
        return ErrorBody(self.message, self.type, self.code, self.param, request_id)

    def envelope(self, request_id: str) -> bytes:
        return ENCODER.encode(ErrorEnvelope(self.body(request_id)))


def request_id_of(request: Request) -> str:
    return str(request.scope.get(REQUEST_ID_KEY, ""))


def error_response(error: ApiError, request_id: str) -> Response:
    """The error as an HTTP response: its status, its headers (Retry-After, Allow, ...) and the envelope."""
    return Response(error.envelope(request_id), status_code=error.status, headers=error.headers, media_type=JSON)


ErrorWriter = Callable[[ApiError, str], Response]


def respond(request: Request, error: ApiError) -> Response:
    """The error in the envelope of the route's dialect: a handler whose clients parse another
    envelope (Anthropic's) puts its writer in the scope before it can fail."""
    writer: ErrorWriter = request.scope.get(ERROR_WRITER_KEY, error_response)
    return writer(error, request_id_of(request))


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return respond(request, exc)


async def handle_provider_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProviderError)
    if exc.status >= 429:  # the provider's trouble; a client's own mistake shows in the access log
        log.warning("upstream_error", code=exc.code, status=exc.status, error=exc.message)
    return respond(request, ApiError.from_provider(exc))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, in our envelope."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        error = ApiError(
            405,
            f"{request.method} is not allowed on {request.url.path}; it takes {headers.get('Allow', 'other methods')}.",
            code="method_not_allowed",
            headers=headers,
        )
    elif exc.status_code == 404:
        error = ApiError(
            404,
            f"There is no route {request.url.path}. GET /openapi.yaml lists every route of this API.",
            code="not_found",
            type="not_found_error",
        )
    else:
        error = ApiError(exc.status_code, str(exc.detail), code="http_error", headers=headers)
    return respond(request, error)


async def handle_internal_error(request: Request, exc: Exception) -> Response:
    """A bug. Runs outside the request-id middleware, so it sets the header itself."""
    request_id = request_id_of(request)
    error = ApiError(
        500,
        "The gateway failed while handling this request; this is a bug on our side. "
        f"Report it with request id {request_id}.",
        code="internal_error",
        type="server_error",
        headers={"X-Request-ID": request_id},
    )
    return respond(request, error)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: handle_api_error,
    ProviderError: handle_provider_error,
    HTTPException: handle_http_exception,
    Exception: handle_internal_error,
}
