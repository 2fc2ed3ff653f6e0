"""Reading a JSON request body: media type, size limit, decoding into typed structs.

Each client mistake becomes an ApiError that names the field at fault and says how to fix it.
"""

from __future__ import annotations

import re
from typing import Protocol, TypeVar

import msgspec
from starlette.requests import Request

from app.errors import ApiError
from providers.base import digits_value

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decodes(Protocol[T_co]):
    """A msgspec decoder, or one of ours that decodes as leniently as its dialect needs."""

    def decode(self, body: bytes, /) -> T_co: ...


LOCATION = re.compile(r" - at `\$\.?(.*)`$")
MISSING_FIELD = re.compile(r"^Object missing required field `(.+)`")
UTF8_BOM = b"\xef\xbb\xbf"  # RFC 8259 lets a parser ignore it; some Windows clients send one
SCHEMA_HINT = "GET /openapi.yaml has the schema."


async def read_json(request: Request, decoder: Decodes[T], max_bytes: int) -> T:
    return decode_json(await read_json_bytes(request, max_bytes), decoder)


async def read_json_bytes(request: Request, max_bytes: int) -> bytes:
    """A JSON body's bytes, checked as ``read_json`` checks them, for a handler that also forwards them."""
    check_media_type(request.headers.get("content-type"))
    body = (await read_body(request, max_bytes)).removeprefix(UTF8_BOM)
    if not body.strip():
        raise ApiError(400, f"The request body is empty; send a JSON object. {SCHEMA_HINT}", code="invalid_json")
    return body


async def read_optional_json(request: Request, decoder: Decodes[T], max_bytes: int) -> T | None:
    """A body that may be left out: None when it is empty, else as ``read_json``."""
    body = (await read_body(request, max_bytes)).removeprefix(UTF8_BOM)
    if not body:  # left out; whitespace alone is a body, and not JSON
        return None
    check_media_type(request.headers.get("content-type"))
    return decode_json(body, decoder)


def decode_json(body: bytes, decoder: Decodes[T]) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid_field(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(
            400,
            f"The request body is not valid JSON ({exc}). Send one JSON object. {SCHEMA_HINT}",
            code="invalid_json",
        ) from None


def check_media_type(content_type: str | None) -> None:
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return
    got = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    raise ApiError(
        415,
        f"The body was sent with {got}; this route takes JSON. Send it with Content-Type: application/json.",
        code="unsupported_media_type",
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = digits_value(request.headers.get("content-length", ""))
    if declared is not None and declared > max_bytes:
        raise too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    return bytes(body)


def too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than this gateway's limit of {max_bytes} bytes. Send a smaller "
        "body, or raise limits.max_body_bytes in the gateway's config file.",
        code="request_too_large",
    )


def invalid_field(detail: str) -> ApiError:
    """Turn msgspec's 'Expected `str`, got `int` - at `$.messages[0].content`' into a 400 with param."""
    location = LOCATION.search(detail)
    path = location.group(1) if location else ""
    reason = detail[: location.start()] if location else detail
    missing = MISSING_FIELD.match(reason)
    if missing:
        param = f"{path}.{missing.group(1)}" if path else missing.group(1)
        return ApiError(
            400, f"The required field `{param}` is missing. {SCHEMA_HINT}", code="missing_field", param=param
        )
    where = f" at `{path}`" if path else ""
    return ApiError(
        400,
        f"Invalid request body: {reason}{where}. Fix that field and retry; {SCHEMA_HINT}",
        code="invalid_type" if ", got `" in reason else "invalid_value",
        param=path or None,
    )
