"""A pytest plugin for `xfail import`, loaded into `pytest --collect-only` in a child process (so the
CLI never imports torch): after collection it writes, as JSON to $MATRIX_MARKER_PROBE_OUT, the
collected node ids, which of them carry $MATRIX_MARKER and where it was found, the marker-like
names it saw (for a did-you-mean) and the collection errors.

A marker is a pytest mark name (`@pytest.mark.NAME`), a truthy attribute set on the test function
or its class by a decorator (PyTorch's `expectedFailureCppSerDes` sets `_expected_failure_cpp_serdes`),
or unittest's expectedFailure (`__unittest_expecting_failure__`)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import textwrap
from typing import Any

import pytest

OUT_ENV, MARKER_ENV = "MATRIX_MARKER_PROBE_OUT", "MATRIX_MARKER"
UNITTEST_ATTR = "__unittest_expecting_failure__"
UNITTEST_NAMES = {"expectedFailure", "unittest.expectedFailure", UNITTEST_ATTR}

_errors: list[dict[str, str]] = []


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _errors.append({"nodeid": report.nodeid, "message": str(report.longrepr).strip().splitlines()[-1:][0] if report.longrepr else ""})


def pytest_collection_finish(session: pytest.Session) -> None:
    marker = os.environ[MARKER_ENV]
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
    with open(os.environ[OUT_ENV], "w", encoding="utf-8") as f:
        json.dump({"collected": [i.nodeid for i in session.items], "found": found, "seen": sorted(seen), "errors": _errors}, f)


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


def _where(obj: Any, item: pytest.Item, offset: int = 0) -> str:
    """`file:line` of `obj`'s definition (its first decorator), the file relative to the suite."""
    target = inspect.unwrap(obj)
    try:
        file, line = inspect.getsourcefile(target), inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return item.location[0]
    return f"{os.path.relpath(file, item.config.rootpath) if file else item.location[0]}:{line + offset}"


def _decorator(obj: Any, attr: str, item: pytest.Item) -> str:
    """`@decorator (file:line)` for the decorator of `obj` that sets `attr`; else the attribute at
    the definition. A decorator is identified by applying it to a throwaway function (PyTorch's
    expectedFailure* decorators only set an attribute); only bare (dotted) names, never calls."""
    fallback = "@unittest.expectedFailure" if attr == UNITTEST_ATTR else attr
    target = inspect.unwrap(obj)
    try:
        lines = inspect.getsourcelines(target)[0]
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return f"{fallback} ({_where(obj, item)})"
    for decorator in getattr(tree.body[0], "decorator_list", []):
        if isinstance(decorator, ast.Name | ast.Attribute) and _sets(decorator, target, attr):
            return f"@{ast.unparse(decorator)} ({_where(obj, item, decorator.lineno - 1)})"
    return f"{fallback} ({_where(obj, item)})"


def _sets(decorator: ast.expr, target: Any, attr: str) -> bool:
    module = inspect.getmodule(target)
    try:
        value: Any = eval(compile(ast.Expression(decorator), "<decorator>", "eval"), vars(module) if module else {})  # a bare dotted name
        probe = value(lambda: None)
        return _carries(probe, attr)
    except Exception:
        return False
