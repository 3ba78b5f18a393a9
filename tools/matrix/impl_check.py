"""Check each variant's `impl` (package.module:ClassName) without importing anything: importing a
variant module imports torch (seconds), and `impl: os:system` must never be called at all.

The module must be a file of the workspace (or of the tool's own tree, where the built-in variants
live), define a class of that name at top level, and that class must look like a Variant subclass:
a base named Variant, or a class of the same module or of a built-in variant module that is one.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import tools.matrix
from tools.matrix.config import Matrix
from tools.matrix.variant_library import find_module

BUILTIN_VARIANTS = Path(tools.matrix.__file__).resolve().parent / "variants"
SIGN = "impl must name a class in a module of this workspace"


def problems(matrix: Matrix, workspace: Path) -> list[str]:
    """One `matrix.yaml:LINE:COL: ...` line per variant whose impl cannot be a Variant subclass."""
    found = []
    for variant in matrix.variants:
        message = _check(variant.impl, workspace)
        if message:
            found.append(matrix.at(("variants", variant.name, "impl"), f"variants.{variant.name}.impl: {message}"))
    return found


def _check(impl: str, workspace: Path) -> str:
    module, _, name = impl.partition(":")
    path = find_module(module, workspace)
    if path is None:
        dotted = module.replace(".", "/")
        return f"{impl!r}: {SIGN} (no {dotted}.py or {dotted}/__init__.py in the workspace)"
    try:
        classes = _classes(path)
    except (SyntaxError, ValueError, OSError) as e:
        return f"{impl!r}: cannot read the module {path.name}: {e}"
    if name not in classes:
        return f"{impl!r}: {SIGN}; {module} defines no class {name!r} (classes: {', '.join(sorted(classes)) or 'none'})"
    if not _is_variant(name, classes, _builtin_variant_names()):
        bases = ", ".join(classes[name]) or "none"
        return f"{impl!r}: class {name!r} is not a Variant subclass (its bases: {bases}); derive it from tools.matrix.variants.Variant"
    return ""


def _classes(path: Path) -> dict[str, list[str]]:
    """Top-level class name -> the last dotted part of each base (`variants.Variant` -> `Variant`)."""
    tree = ast.parse(path.read_bytes(), str(path))
    out: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ast.unparse(b) for b in node.bases]
    return out


def _is_variant(name: str, classes: dict[str, list[str]], known: frozenset[str]) -> bool:
    """Whether `name`'s bases lead (within its module) to Variant or a built-in variant class."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for base in classes.get(current, []):
            if base == "Variant" or base in known:
                return True
            todo.append(base)
    return False


@cache
def _builtin_variant_names() -> frozenset[str]:
    """The Variant subclasses of tools/matrix/variants/*.py (users may derive from these)."""
    names: set[str] = set()
    for path in sorted(BUILTIN_VARIANTS.glob("*.py")):
        classes = _classes(path)
        names |= {c for c in classes if _is_variant(c, classes, frozenset())}
    return frozenset(names)
