"""The config package's shape (issue 11): its modules import each other in one direction, none of
them prints or reaches the CLI, and the package re-exports every public name it lists."""

from __future__ import annotations

import ast
from pathlib import Path

import zot_registry.config as config_package

PACKAGE_DIR = Path(config_package.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """What a module of the package imports relatively: a module of the package by its name
    (`from .models import` -> "models"), one of zot_registry with a dot (`from ..cli import` -> ".cli")."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            dots = "." * (node.level - 1)
            if node.module is not None:
                found.add(dots + node.module.partition(".")[0])
            else:
                found.update(dots + alias.name for alias in node.names)
    return found


def test_modules_import_each_other_in_one_direction() -> None:
    modules = {path.stem: _imports(path) for path in PACKAGE_DIR.glob("*.py") if path.stem != "__init__"}
    assert {"loader", "keymap", "models", "messages", "tables", "values", "jsontext"} <= set(modules)
    order: list[str] = []
    pending = {name: {dep for dep in deps if dep in modules} for name, deps in modules.items()}
    while pending:
        ready = sorted(name for name, deps in pending.items() if deps <= set(order))
        assert ready, f"an import cycle among {sorted(pending)}"
        order += ready
        for name in ready:
            del pending[name]


def test_no_module_reaches_the_cli() -> None:
    # Printing is the CLI's (cli.py, preflight.py); importing either from here was a cycle once.
    for path in PACKAGE_DIR.glob("*.py"):
        assert not _imports(path) & {".cli", ".preflight", ".console"}, path.name
        assert "print(" not in path.read_text(), path.name


def test_every_listed_name_is_exported() -> None:
    for name in config_package.__all__:
        assert getattr(config_package, name) is not None, name
