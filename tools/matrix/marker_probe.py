"""A pytest plugin for `xfail import`, loaded into `pytest --collect-only` in a child process (so the
CLI never imports torch): after collection it writes, as JSON to $MATRIX_MARKER_PROBE_OUT, the
collected node ids, which of them carry $MATRIX_MARKER and where it was found, the marker-like
names it saw (for a did-you-mean) and the collection errors.

A marker is a pytest mark name (`@pytest.mark.NAME`), a truthy attribute set on the test function
or its class by a decorator (PyTorch's `expectedFailureCppSerDes` sets `_expected_failure_cpp_serdes`),
or unittest's expectedFailure (`__unittest_expecting_failure__`)."""

from __future__ import annotations

import ast
import functools
import inspect
import json
import linecache
import os
from typing import Any

import pytest

OUT_ENV, MARKER_ENV = "MATRIX_MARKER_PROBE_OUT", "MATRIX_MARKER"
# Read and bound when pytest loads this plugin, before any test module: a module that changes the
# environment or replaces json.dump or open at import cannot change what is written, or where.
_OUT, _MARKER = os.environ.get(OUT_ENV, ""), os.environ.get(MARKER_ENV, "")
_dump, _open = json.dump, open
UNITTEST_ATTR = "__unittest_expecting_failure__"
UNITTEST_NAMES = {"expectedFailure", "unittest.expectedFailure", UNITTEST_ATTR}

_errors: list[dict[str, str]] = []


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _errors.append({"nodeid": report.nodeid, "message": str(report.longrepr).strip().splitlines()[-1:][0] if report.longrepr else ""})


def pytest_collection_finish(session: pytest.Session) -> None:
    marker = _MARKER
    attr = UNITTEST_ATTR if marker in UNITTEST_NAMES else marker
    found, seen = {}, set()
    for item in session.items:
        function = getattr(item, "function", None) or getattr(item, "obj", None)
        seen.update(m.name for m in item.iter_markers())
        for holder in (function, inspect.unwrap(function) if function else None, getattr(item, "cls", None)):
            seen.update(k for k, v in getattr(holder, "__dict__", {}).items() if v is True)
        hit = _find(item, function, marker, attr)
        if hit:
            found[item.nodeid] = hit
    with _open(_OUT, "w", encoding="utf-8") as f:
        _dump({"collected": [i.nodeid for i in session.items], "found": found, "seen": sorted(seen), "errors": _errors}, f)


def _find(item: pytest.Item, function: Any, marker: str, attr: str) -> str | None:
    """How and where `item` carries the marker: `@label (file:line)`, or None."""
    if item.get_closest_marker(marker) is not None:
        return f"@pytest.mark.{marker} ({_where(function, item) if function else item.location[0]})"
    for holder in (function, getattr(item, "cls", None)):
        if holder is not None and _carries(holder, attr):
            return _decorator(holder, attr, item)
    return None


def _carries(obj: Any, attr: str) -> bool:
    """A marker attribute: set and truthy (a decorator's True), and not a method of that name."""
    try:
        value = getattr(obj, attr, None)
        return bool(value) and not callable(value)
    except Exception:  # an odd object under that name (a property that raises, an array): not a marker
        return False


def _where(obj: Any, item: pytest.Item, line: int | None = None) -> str:
    """`file:line` of `obj`'s definition (its first decorator; `line`: that line instead), the file
    relative to the suite."""
    target = inspect.unwrap(obj)
    try:
        file, line = inspect.getsourcefile(target), line or inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return item.location[0]
    return f"{os.path.relpath(file, item.config.rootpath) if file else item.location[0]}:{line}"


def _decorator(obj: Any, attr: str, item: pytest.Item) -> str:
    """`@decorator (file:line)` for the decorator of `obj` that sets `attr` (or `decorator(...)` for
    a call that wraps a lambda); else the attribute at the definition. A decorator is identified by
    applying it to a throwaway function (PyTorch's expectedFailure* decorators only set an
    attribute); only bare (dotted) names, never calls.

    The definition is found in its whole file, parsed once, by the line Python records for it (its
    first decorator's): a method's source alone cannot always be parsed (a body string whose lines
    start in column 0, as assertExpectedInline's do, cannot be dedented)."""
    fallback = "@unittest.expectedFailure" if attr == UNITTEST_ATTR else attr
    target = inspect.unwrap(obj)
    try:
        file, line = inspect.getsourcefile(target), inspect.getsourcelines(target)[1]
        tree = _parsed(file) if file else None
    except (OSError, TypeError, SyntaxError, ValueError):
        tree = None
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and _first_line(node) == line:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Name | ast.Attribute) and _sets(decorator, target, attr):
                    return f"@{ast.unparse(decorator)} ({_where(obj, item, decorator.lineno)})"
        elif target.__name__ == "<lambda>" and isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            wraps_it = any(isinstance(a, ast.Lambda) and a.lineno == line for a in node.args)
            if wraps_it and _sets(node.func, target, attr):
                return f"{ast.unparse(node.func)}(...) ({_where(obj, item, node.lineno)})"
    return f"{fallback} ({_where(obj, item)})"


@functools.cache
def _parsed(file: str) -> ast.Module:
    return ast.parse("".join(linecache.getlines(file)), file)


def _first_line(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _sets(decorator: ast.expr, target: Any, attr: str) -> bool:
    module = inspect.getmodule(target)
    try:
        value: Any = eval(compile(ast.Expression(decorator), "<decorator>", "eval"), vars(module) if module else {})  # a bare dotted name
        probe = value(lambda: None)
        return _carries(probe, attr)
    except Exception:
        return False
