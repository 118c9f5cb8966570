"""The import graph of ``platform/featureplane``: no cycle, no import down a floor, no forbidden
dependency. Every import counts, at module level or inside a function (a lazy import is still a
dependency), including those only for type checking.

Floors (see the package docstring): a module may import from its own floor and the floors
beneath it, never from one above.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "platform" / "featureplane"

# The first dotted part below featureplane (a subpackage or a top-level module) -> its floor.
FLOORS: dict[str, int] = {
    "errors": 0,
    "redact": 0,
    "confine": 0,
    "settings": 1,
    "sources": 1,
    "offline": 1,
    "tenancy": 2,
    "online": 2,
    "feast_config": 3,
    "observability": 3,
    "k8s": 3,
    "embedded": 3,
    "samples": 3,
    "registry": 4,
    "quality": 4,
    "cost": 4,
    "transform": 4,
    "ingest": 5,
    "gateway": 5,
    "dashboards": 5,
    "materialize": 6,
    "demo": 7,
    "cli": 8,
    "__init__": 9,  # the package root re-exports from below
}

# (importer prefix, imported prefix, why): edges no floor rule would catch.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("featureplane.gateway", "featureplane.materialize", "the gateway serves, never writes"),
    ("featureplane.gateway", "featureplane.ingest", "the gateway serves, never writes"),
    ("featureplane.gateway", "featureplane.dashboards", "generators are build-time"),
    ("featureplane.gateway.features", "featureplane.cost", "cost stays off the request path"),
    ("featureplane.gateway.lookup", "featureplane.cost", "cost stays off the request path"),
    ("featureplane.gateway.reader", "featureplane.cost", "cost stays off the request path"),
    ("featureplane.gateway.auth", "featureplane.cost", "cost stays off the request path"),
    ("featureplane.gateway.quotas", "featureplane.cost", "cost stays off the request path"),
    ("featureplane.observability", "featureplane.cost", "runtime telemetry stands alone"),
    ("featureplane.online", "featureplane.tenancy", "the store format knows no tenants"),
    ("featureplane.online", "featureplane.feast_config", "the store format knows no tenants"),
    ("featureplane.transform", "featureplane.settings", "tenant code never sees platform config"),
    ("featureplane.transform", "featureplane.online", "tenant code never reaches the store"),
    ("featureplane.transform", "featureplane.feast_config", "tenant code never sees the registry"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every featureplane module ``path`` imports (``from a import b`` yields ``a.b`` when that
    is a module, else ``a``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = (
        _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "featureplane")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "featureplane":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if _exists(candidate) else base


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        graph[name] = {m for m in _imports(path) if m != name}
    return graph


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS["__init__" if len(parts) == 1 else parts[1]]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports down a floor, or along a forbidden edge, one line each."""
    found = []
    for importer, targets in sorted(graph.items()):
        for target in sorted(targets):
            if _floor(target) > _floor(importer):
                found.append(
                    f"{importer} (floor {_floor(importer)}) imports {target} "
                    f"(floor {_floor(target)}), a floor above it"
                )
            for source, forbidden, why in FORBIDDEN:
                if (importer + ".").startswith(source + ".") and (target + ".").startswith(
                    forbidden + "."
                ):
                    found.append(f"{importer} imports {target}: {why}")
            if target.startswith("featureplane.cli") and not importer.startswith(
                "featureplane.cli"
            ):
                found.append(f"{importer} imports {target}: nothing imports the command line")
    return found


def test_every_module_has_a_floor() -> None:
    missing = {m.split(".")[1] for m in import_graph() if "." in m} - set(FLOORS)
    assert not missing, f"give these a floor in FLOORS: {sorted(missing)}"


def test_the_import_graph_has_no_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_import_runs_down_a_floor_or_along_a_forbidden_edge() -> None:
    found = violations(import_graph())
    assert not found, "\n".join(found)


def test_errors_is_a_leaf() -> None:
    """errors.py imports only the standard library and typing."""
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] if not node.level else "featureplane")
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("featureplane.errors", "featureplane.settings"), "a floor above it"),
        (("featureplane.gateway.ops", "featureplane.materialize.runner"), "never writes"),
        (("featureplane.observability.metrics", "featureplane.cost.report"), "stands alone"),
        (("featureplane.registry.apply", "featureplane.cli"), "a floor above it"),
    ],
)
def test_the_rules_catch_a_forbidden_import(extra: tuple[str, str], expected: str) -> None:
    """The checks can fail: the same graph with one forbidden import added is refused."""
    graph = import_graph()
    importer, target = extra
    graph[importer] = graph[importer] | {target}
    assert any(expected in line for line in violations(graph))


def test_a_cycle_is_found() -> None:
    graph = import_graph()
    graph["featureplane.settings"] = graph["featureplane.settings"] | {
        "featureplane.online.clients"
    }
    assert ["featureplane.online.clients", "featureplane.settings"] in [
        [m for m in c if m in ("featureplane.online.clients", "featureplane.settings")]
        for c in cycles(graph)
    ]
