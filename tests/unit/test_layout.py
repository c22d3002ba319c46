"""The layout itself. The test tree: pytest imports test modules by basename (rootdir-relative, no
packages), so two test files with one name in different folders stop the whole run at collection. The
project's modules: no import circles among them, and the product (fanout/, services/, deploy/) imports
nothing of the benchmarks."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_every_test_module_has_a_unique_basename() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def _imports_between_modules() -> dict[str, set[str]]:
    """Every import (at module level or inside a function) from one project module to another."""
    root = TESTS.parent
    modules: dict[str, Path] = {}
    for package in ("fanout", "services", "bench", "deploy"):
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    edges[name] |= {target} if target in modules else {node.module} & modules.keys()
            elif isinstance(node, ast.Import):
                edges[name] |= {alias.name for alias in node.names} & modules.keys()
    return edges


def test_no_module_of_the_project_imports_itself_through_others() -> None:
    """No import circle, even through an import inside a function: each module's imports reach it again."""
    edges = _imports_between_modules()
    circles = []
    for start in edges:
        seen, todo = set(), list(edges[start])
        while todo:
            module = todo.pop()
            if module == start:
                circles.append(start)
                break
            if module not in seen:
                seen.add(module)
                todo.extend(edges[module])
    assert circles == []


def test_the_product_imports_nothing_of_the_benchmarks() -> None:
    product = {name: targets for name, targets in _imports_between_modules().items()
               if name.split(".")[0] in ("fanout", "services", "deploy")}
    assert product  # the scan found the product's modules
    assert {name: sorted(t for t in targets if t.startswith("bench")) for name, targets in product.items()
            if any(t.startswith("bench") for t in targets)} == {}
