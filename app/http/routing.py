"""Routes bound from openapi.yaml: each operationId names its handler, so spec and server cannot drift."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request
from starlette.routing import BaseRoute, Route, WebSocketRoute

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
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


def path_route(path: str, methods: dict[str, Handler], name: str) -> Route:
    """One route per path, so a 405's Allow header lists every method the path takes."""
    if len(methods) == 1:
        ((method, handler),) = methods.items()
        return Route(path, handler, methods=[method], name=name)

    async def dispatch(request: Request) -> Any:
        return await methods["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(methods), name=name)


def build_routes(spec: Mapping[str, Any], handlers: Mapping[str, Handler]) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    bound = set()
    by_path: dict[str, dict[str, Handler]] = {}
    names: dict[str, str] = {}  # the route's name: its operationIds
    for path, method, operation_id in operations(spec):
        handler = handlers.get(operation_id)
        if handler is None:
            raise SpecError(f"openapi.yaml operation {operation_id} ({method} {path}) has no handler.")
        by_path.setdefault(path, {})[method] = handler
        names[path] = f"{names[path]},{operation_id}" if path in names else operation_id
        bound.add(operation_id)
    for path, methods in by_path.items():
        routes.append(path_route(path, methods, names[path]))
    for path, name in websockets(spec):
        if name not in handlers:
            raise SpecError(f"openapi.yaml WebSocket {path} names handler {name}, which does not exist.")
        routes.append(WebSocketRoute(path, handlers[name], name=name))
        bound.add(name)
    unbound = sorted(set(handlers) - bound)
    if unbound:
        raise SpecError(f"Handlers {', '.join(unbound)} have no operation in openapi.yaml.")
    return routes
