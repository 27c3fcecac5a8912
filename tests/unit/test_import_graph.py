"""Both packages import in one direction: no cycle among their modules, counting the imports made
inside functions too (a lazy import hides a cycle from Python, not from a reader)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import REPO_ROOT

PACKAGES = {"zot_registry": REPO_ROOT / "registry", "zot_operator": REPO_ROOT / "operator"}


def _modules() -> Iterator[tuple[str, Path, bool]]:
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if is_package else parts), path, is_package


def _import_graph() -> dict[str, set[str]]:
    modules = {name: (path, is_package) for name, path, is_package in _modules()}
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        wanted: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                for alias in node.names:
                    # `from . import tables` needs the submodule, not the package's __init__
                    submodule = f"{target}.{alias.name}"
                    wanted.add(submodule if submodule in modules else target)
        graph[name] = {module for module in wanted if module in modules and module != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                found.append(sorted([module, *component]))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_the_packages() -> None:
    graph = _import_graph()
    assert "zot_registry.app" in graph and "zot_operator.reconcile" in graph
    assert "zot_registry.cluster.decision" in graph["zot_registry.cluster.serving"]  # an edge it must find
    assert "zot_registry.cluster.serving" in graph["zot_registry.app"]  # imported inside a function


def test_no_import_cycle() -> None:
    assert _cycles(_import_graph()) == []


def test_a_cycle_would_be_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
