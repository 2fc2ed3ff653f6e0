from __future__ import annotations

import orjson
import pytest

from app.errors import ApiError
from providers.base import (
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    RateLimitedError,
    StreamTruncatedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidRequestError("bad"), 400, "invalid_request"),
        (ModelNotFoundError("none"), 404, "model_not_found"),
        (RateLimitedError("slow"), 429, "rate_limited"),
        (ProviderError("broke"), 502, "upstream_error"),
        (StreamTruncatedError("cut"), 502, "stream_truncated"),
        (UpstreamUnavailableError("busy"), 503, "upstream_unavailable"),
        (UpstreamTimeoutError("late"), 504, "upstream_timeout"),
    ],
)
def test_provider_errors_keep_their_status_and_code(error: ProviderError, status: int, code: str) -> None:
    api_error = ApiError.from_provider(error)
    assert (api_error.status, api_error.code, api_error.message) == (status, code, error.message)


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (2.6, "3"), (30.0, "30")])
def test_retry_after_is_whole_seconds_at_least_one(seconds: float, header: str) -> None:
    assert ApiError.from_provider(RateLimitedError("slow", retry_after=seconds)).headers == {"Retry-After": header}


def test_envelope_has_every_field() -> None:
    error = ApiError(400, "m", code="c", param="p")
    assert orjson.loads(error.envelope("r")) == {
        "error": {"message": "m", "type": "invalid_request_error", "code": "c", "param": "p", "request_id": "r"}
    }
