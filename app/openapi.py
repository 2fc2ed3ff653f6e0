"""Routes bound from openapi.yaml: each operationId names its handler, so spec and server cannot drift."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from starlette.routing import BaseRoute, Route, WebSocketRoute

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

Handler = Callable[..., Any]


class SpecError(LookupError):
    """openapi.yaml and the handlers disagree."""


def load_spec(path: Path = SPEC_PATH) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    return yaml.safe_load(raw), raw


def operations(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(path, METHOD, operationId) for every operation in the spec."""
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method.upper(), item[method]["operationId"]


def websockets(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, handler name) for every WebSocket in the spec's ``x-websockets`` extension."""
    for path, item in spec.get("x-websockets", {}).items():
        yield path, item["x-handler"]


def build_routes(spec: Mapping[str, Any], handlers: Mapping[str, Handler]) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    bound = set()
    for path, method, operation_id in operations(spec):
        handler = handlers.get(operation_id)
        if handler is None:
            raise SpecError(f"openapi.yaml operation {operation_id} ({method} {path}) has no handler.")
        routes.append(Route(path, handler, methods=[method], name=operation_id))
        bound.add(operation_id)
    for path, name in websockets(spec):
        if name not in handlers:
            raise SpecError(f"openapi.yaml WebSocket {path} names handler {name}, which does not exist.")
        routes.append(WebSocketRoute(path, handlers[name], name=name))
        bound.add(name)
    unbound = sorted(set(handlers) - bound)
    if unbound:
        raise SpecError(f"Handlers {', '.join(unbound)} have no operation in openapi.yaml.")
    return routes
