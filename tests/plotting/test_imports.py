"""Plotting draws stored numbers only: no plotting module imports compute code, directly or
through the flatscope modules it imports (read from the source with ``ast``, imports inside
functions included)."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil

import flatscope.plotting

COMPUTE = (
    "flatscope.operators",
    "flatscope.linalg",
    "flatscope.landscape",
    "flatscope.optim",
    "flatscope.training",
)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def direct_imports(name: str) -> set[str]:
    """The flatscope modules that module ``name`` imports anywhere in its source, with the
    packages whose ``__init__`` an import runs (all but the top-level ``flatscope``)."""
    spec = importlib.util.find_spec(name)
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")}
    modules = {m for m in found if m.startswith("flatscope.")}
    parents = {m.rsplit(".", k)[0] for m in modules for k in range(1, m.count("."))}
    return modules | parents


def imported_closure(roots: set[str]) -> set[str]:
    """Every flatscope module reachable from ``roots`` through their imports."""
    seen, todo = set(), set(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo |= direct_imports(name) - seen
    return seen


def plotting_modules() -> set[str]:
    return {"flatscope.plotting"} | {
        f"flatscope.plotting.{info.name}"
        for info in pkgutil.iter_modules(flatscope.plotting.__path__)
    }


def is_compute(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in COMPUTE)


def test_plotting_imports_no_compute_module():
    reached = imported_closure(plotting_modules())
    assert {"flatscope.io.landscape_file", "flatscope.io.spectral_measure"} <= reached
    assert sorted(filter(is_compute, reached)) == []


def test_the_walk_sees_compute_imports_where_they_are():
    # landscape surfaces are computed: the loss evaluator and the Hessian operator's loss type
    reached = imported_closure({"flatscope.landscape.surface"})
    assert {"flatscope.landscape.evaluation", "flatscope.operators.hessian"} <= reached
    assert "flatscope.io.landscape_file" in reached
