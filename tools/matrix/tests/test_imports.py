"""The module graph of tools/matrix stays a tree of layers (issue #23): no import circle, and the
variant author's package knows nothing of the runtime. Read from the sources with `ast` (imports
inside functions count too: a lazy import is still a dependency), so it stays true as code moves."""

from __future__ import annotations

import ast
from pathlib import Path

import tools.matrix

ROOT = Path(tools.matrix.__file__).absolute().parent  # tools/matrix
PREFIX = "tools.matrix"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of tools/matrix but its own tests, by dotted name."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "tests" not in p.relative_to(ROOT).parts}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The tools.matrix modules `path` imports (`from pkg import mod` counts as mod when mod is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module for alias in node.names}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_graph_is_read_from_the_sources():
    edges = graph()
    assert "tools.matrix.runtime.plugin" in edges and "tools.matrix.config.load" in edges
    assert "tools.matrix.runtime.transform_host" in edges["tools.matrix.runtime.plugin"]
    assert "tools.matrix.variants" in edges["tools.matrix.runtime.transform_host"]


def test_no_import_circle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_variants_know_nothing_of_the_runtime():
    """The variant author's interface (a transform of what the API returns) does not depend on the
    runtime's ledger, evidence or check: those live in runtime/ and are given to the variant."""
    edges = graph()
    leaks = {name: sorted(d for d in deps if d.startswith(f"{PREFIX}.runtime")) for name, deps in edges.items() if name.startswith(f"{PREFIX}.variants")}
    assert {name: deps for name, deps in leaks.items() if deps} == {}
