"""The package's import graph: one direction, no cycles (function-level imports included)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import flatscope

ROOT = Path(flatscope.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["flatscope", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """``{module: flatscope modules it imports anywhere in its source}``."""
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes, or ``None`` (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node, [])
        if cycle:
            return cycle
    return None


def _packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between ``flatscope.<package>`` units (the package ``__init__`` excluded)."""

    def unit(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        if source == "flatscope":
            continue
        out[unit(source)].update(unit(t) for t in targets if unit(t) != unit(source))
    return out


def test_modules_import_each_other_in_one_direction():
    assert _find_cycle(_import_graph()) is None


def test_packages_import_each_other_in_one_direction():
    assert _find_cycle(_packages(_import_graph())) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
