"""The import rule: every import in app/ and providers/ points down the layers, and none closes a cycle.

    main -> chat, http.status -> dialects, tools, conversations -> http, errors, ops, services -> providers

Imports are read from the source's syntax trees, so imports under ``if TYPE_CHECKING:`` and inside
functions count too: a type-only import still ties the two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "providers")
# Top first; a module may import its own layer or any below. The longest matching prefix decides.
LAYERS: list[tuple[str, ...]] = [
    ("app.main", "app.__main__"),
    ("app.chat", "app.http.status"),
    ("app.dialects", "app.tools", "app.conversations"),
    ("app.http", "app.errors", "app.ops", "app.services", "app.config", "app.settings", "app"),
    ("providers",),
]
Graph = Mapping[str, set[str]]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def known_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imported(tree: ast.AST, here: str, modules: Mapping[str, Path]) -> Iterator[str]:
    """Every module of ours that ``tree`` imports; ``from package import submodule`` names the submodule."""
    package = here if modules.get(here, Path()).name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*anchor, base]))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PACKAGES)


def import_graph() -> dict[str, set[str]]:
    modules = known_modules()
    return {
        name: set(imported(ast.parse(path.read_text(encoding="utf-8")), name, modules)) - {name}
        for name, path in modules.items()
    }


def layer_of(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise LookupError(f"{module} is in no layer; add it to LAYERS")
    return max(matches)[1]


def upward_imports(graph: Graph) -> list[str]:
    return sorted(
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
        for source, targets in graph.items()
        for target in targets
        if layer_of(target) < layer_of(source)
    )


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            component.append(node)
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_points_down_the_layers() -> None:
    assert upward_imports(import_graph()) == []


def test_no_imports_close_a_cycle() -> None:
    assert cycles(import_graph()) == []


def test_providers_never_import_app() -> None:
    graph = import_graph()
    assert [
        (s, t) for s, t_set in graph.items() if s.startswith("providers") for t in t_set if t.startswith("app")
    ] == []


def test_the_graph_sees_type_only_and_submodule_imports() -> None:
    graph = import_graph()
    assert "app.chat.exchange" in graph["app.chat.intake"]
    assert "app.ops.metrics" in graph["app.chat.exchange"]  # `from app.ops import metrics`
    assert all(module in graph for module in ("app.main", "providers.base", "app.dialects.openai"))


@pytest.mark.parametrize(
    ("graph", "upward", "cyclic"),
    [
        ({"providers.base": {"app.errors"}, "app.errors": set()}, 1, 0),
        ({"app.dialects.openai": {"app.chat.exchange"}, "app.chat.exchange": set()}, 1, 0),
        ({"app.chat.exchange": {"app.dialects.openai"}, "app.dialects.openai": set()}, 0, 0),
        ({"app.http.auth": {"app.http.access"}, "app.http.access": {"app.http.auth"}}, 0, 1),
        (
            {"app.ops.logs": {"app.ops.metrics"}, "app.ops.metrics": {"app.errors"}, "app.errors": {"app.ops.logs"}},
            0,
            1,
        ),
    ],
)
def test_the_rule_catches_what_it_should(graph: Graph, upward: int, cyclic: int) -> None:
    assert (len(upward_imports(graph)), len(cycles(graph))) == (upward, cyclic)


def test_a_module_outside_every_layer_is_reported() -> None:
    with pytest.raises(LookupError, match="in no layer"):
        layer_of("elsewhere.module")
