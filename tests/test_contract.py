"""The whole openapi.yaml against the app: schemathesis with its default checks, negative data included."""

from __future__ import annotations

from typing import Any

import schemathesis

from tests.conftest import make_app

schema = schemathesis.openapi.from_asgi("/openapi.yaml", make_app())


@schema.parametrize()
def test_api_matches_its_contract(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate()
