from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route, WebSocketRoute

from app.http.routing import SPEC_PATH, SpecError, build_routes, load_spec, operations, websockets
from app.main import HANDLERS
from tests.conftest import make_app


def test_spec_is_valid_openapi_3_1() -> None:
    spec, _ = load_spec()
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_operation_has_a_handler_and_every_handler_an_operation() -> None:
    spec, _ = load_spec()
    bound = {operation_id for _, _, operation_id in operations(spec)} | {name for _, name in websockets(spec)}
    assert bound == set(HANDLERS)


def test_route_table_equals_the_spec() -> None:
    spec, _ = load_spec()
    app = make_app()
    routes = {(r.path, m) for r in app.routes if isinstance(r, Route) for m in r.methods or () if m != "HEAD"}
    assert routes == {(path, method) for path, method, _ in operations(spec)}
    sockets = {r.path for r in app.routes if isinstance(r, WebSocketRoute)}
    assert sockets == {path for path, _ in websockets(spec)}


def test_an_operation_without_handler_stops_start_up() -> None:
    spec = {"paths": {"/x": {"get": {"operationId": "getX"}}}}
    with pytest.raises(SpecError, match="getX"):
        build_routes(spec, {})


def test_a_handler_without_operation_stops_start_up() -> None:
    spec: dict[str, dict[str, object]] = {"paths": {}}
    with pytest.raises(SpecError, match="orphan"):
        build_routes(spec, {"orphan": lambda request: None})


async def test_the_spec_is_served_as_written(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/yaml"
    assert response.content == SPEC_PATH.read_bytes()


# Routes whose clients parse another vendor's envelope; every other route uses the gateway's own.
OWN_ENVELOPES = {
    "/v1/messages": "#/components/schemas/AnthropicErrorEnvelope",
    "/v1/messages/count_tokens": "#/components/schemas/AnthropicErrorEnvelope",
    "/v1/models": "#/components/schemas/EitherErrorEnvelope",  # as the client's headers say
    "/v1/models/{model_id}": "#/components/schemas/EitherErrorEnvelope",
}
NOT_ERRORS = {("/health/ready", "503"): "#/components/schemas/Readiness"}  # an answer, not a refusal


def test_every_error_status_uses_the_envelope() -> None:
    spec, _ = load_spec()
    responses = spec["components"]["responses"]
    for path, method, _ in operations(spec):
        for status, response in spec["paths"][path][method.lower()]["responses"].items():
            if status.startswith(("4", "5")) and status != "405":  # routing's 405 comes before any route
                schema = responses[response["$ref"].rsplit("/", 1)[1]]["content"]["application/json"]["schema"]
                expected = NOT_ERRORS.get((path, status)) or OWN_ENVELOPES.get(
                    path, "#/components/schemas/ErrorEnvelope"
                )
                assert schema == {"$ref": expected}, (path, status)
