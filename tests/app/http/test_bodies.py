from __future__ import annotations

import pytest

from app.errors import ApiError
from app.http.bodies import check_media_type, invalid_field


@pytest.mark.parametrize(
    ("detail", "code", "param"),
    [
        ("Object missing required field `model`", "missing_field", "model"),
        ("Object missing required field `role` - at `$.messages[0]`", "missing_field", "messages[0].role"),
        ("Expected `str`, got `int` - at `$.messages[0].content`", "invalid_type", "messages[0].content"),
        ("Expected `float` <= 2.0 - at `$.temperature`", "invalid_value", "temperature"),
        ("Invalid enum value 'x' - at `$.tool_choice`", "invalid_value", "tool_choice"),
        ("Expected `object`, got `array`", "invalid_type", None),
    ],
)
def test_msgspec_errors_become_400s_with_param(detail: str, code: str, param: str | None) -> None:
    error = invalid_field(detail)
    assert (error.status, error.code, error.param) == (400, code, param)
    assert "GET /openapi.yaml" in error.message


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"]
)
def test_json_media_types_pass(content_type: str) -> None:
    check_media_type(content_type)


@pytest.mark.parametrize("content_type", [None, "", "text/json", "multipart/form-data; boundary=x"])
def test_other_media_types_are_415(content_type: str | None) -> None:
    with pytest.raises(ApiError) as info:
        check_media_type(content_type)
    assert info.value.status == 415
