"""The recommender package is leaf-first: its imports only point down (no two modules import each other,
directly or through others, late imports inside functions included) and nothing in it imports Django."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "recommender"


def module_imports(package: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports anywhere in its body (functions included), and
    ``"<top-level package>"`` names for everything outside the package."""
    name = package.name
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    out: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        if path.stem == "__init__":
            continue
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from . import x / from .x import y
                    base = node.module.split(".")[0] if node.module else None
                    targets = [f"{name}.{base}"] if base else [f"{name}.{a.name}" for a in node.names]
                else:
                    targets = [node.module or ""]
                    if node.module == name:  # from recommender import data
                        targets = [f"{name}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                parts = t.split(".")
                if parts[0] == name and len(parts) > 1 and parts[1] in modules:
                    if parts[1] != path.stem:
                        found.add(parts[1])
                elif parts[0] != name:
                    found.add(f"<{parts[0]}>")
        out[path.stem] = found
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_two_recommender_modules_import_each_other():
    graph = {m: {d for d in deps if not d.startswith("<")} for m, deps in module_imports(PACKAGE).items()}
    assert len(graph) > 15 and "rules" in graph["pipeline"]  # the walk sees the package's real imports
    assert cycles(graph) == [], "modules that import each other, directly or through others"


def test_recommender_never_imports_django():
    offenders = sorted(m for m, deps in module_imports(PACKAGE).items() if "<django>" in deps)
    assert offenders == []


def test_the_check_finds_a_cycle_through_a_late_import(tmp_path):
    pkg = tmp_path / "recommender"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("import numpy\n\ndef f():\n    from recommender.top import g\n    return g\n")
    (pkg / "mid.py").write_text("from recommender import low\n")
    (pkg / "top.py").write_text("from recommender.mid import low\nimport django.conf\n")
    graph = module_imports(pkg)
    assert graph == {"low": {"top", "<numpy>"}, "mid": {"low"}, "top": {"mid", "<django>"}}
    assert cycles({m: {d for d in deps if not d.startswith("<")} for m, deps in graph.items()}) == [
        ["low", "mid", "top"]
    ]
