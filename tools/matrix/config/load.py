"""Reading matrix.yaml: the YAML with each key's position, its size and encoding, the JSON Schema
shipped beside the package (the same one editors use) with its errors said plainly; then build.py
checks cross-references and the file system, so one run reports every problem. A suite's
expectations file (suites.<s>.expectations_file, for thousands of entries) is read the same way
and checked as if matrix.yaml held it under expectations.<suite>, its problems at its own lines."""

from __future__ import annotations

import copy
import json
import math
import os
import stat
import unicodedata
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools.matrix.config.build import build
from tools.matrix.config.model import Matrix, MatrixError
from tools.matrix.config.problems import Problems, did_you_mean, dotted
from tools.matrix.yaml_lines import YamlProblem, decode, load_located

SCHEMA_PATH = Path(__file__).parent.parent / "matrix.schema.json"
MAX_BYTES = 1 << 20  # a real matrix.yaml is a few KiB; refuse to spend memory on more


@cache
def _validator(definition: str = "") -> jsonschema.protocols.Validator:
    """matrix.yaml's validator, or (`definition`) that of one of its schema's $defs."""
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]} if definition else schema)


def load(path: str | os.PathLike[str], workspace: str | os.PathLike[str] | None = None, packages_visible: bool = True,
         overrides: dict[str, str] | None = None) -> Matrix:  # fmt: skip
    """Read matrix.yaml at `path`; raise MatrixError listing every problem. A malformed
    test_durations.json alone does not raise: it is in `Matrix.plan_problems`. Without
    `packages_visible` (a Bazel test's runfiles hold no BUILD file of other packages), variant
    libraries are taken as matrix.yaml names them: Bazel checks the labels when it loads the cells.
    `overrides`: workspace-relative path -> text to read instead of that expectations file."""
    path = Path(path)
    workspace = Path(workspace) if workspace is not None else path.parent
    display = os.path.relpath(path, workspace) if path.is_absolute() else str(path)
    try:
        info = path.stat()
        mode, size = info.st_mode, info.st_size
        if stat.S_ISREG(mode) and size > MAX_BYTES:  # checked before reading: /dev/zero or a FIFO would never end
            raise MatrixError([f"{display}:1:1: the file is {size} bytes; matrix.yaml may have at most {MAX_BYTES} (1 MiB)"])
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise MatrixError([f"{display}: cannot read: not a regular file"])
        raw = path.read_bytes()
    except OSError as e:
        raise MatrixError([f"{display}: cannot read: {e.strerror}"]) from None
    try:
        text = decode(raw)
    except YamlProblem as e:
        raise MatrixError([f"{display}:{e.line}:{e.col}: {e.message}"]) from None
    return parse(text, display, workspace, packages_visible, overrides)


def parse(text: str, display: str, workspace: Path, packages_visible: bool = True, overrides: dict[str, str] | None = None) -> Matrix:
    try:
        doc = load_located(text)
    except YamlProblem as e:
        raise MatrixError([f"{display}:{e.line}:{e.col}: {e.message}"]) from None
    except yaml.YAMLError as e:
        raise MatrixError([f"{display}:{_yaml_error(e, text)}"]) from None
    problems = Problems(display, doc)
    for line, col, message in doc.problems:
        problems.at_pos(line, col, message)
    for path, line, col in doc.duplicates:
        problems.at_pos(line, col, f"duplicate key {path[-1]!r} in {'.'.join(map(str, path[:-1])) or 'the document'}")
    if doc.data is None:
        problems.add((), "the file is empty; it must be a mapping with keys devices, variants, suites, expectations")
        raise MatrixError(problems.lines)
    if not isinstance(doc.data, dict):
        problems.add((), "the document must be a mapping with keys devices, variants, suites, expectations")
        raise MatrixError(problems.lines)
    _check_strings(doc.data, problems)
    errors = list(_validator().iter_errors(doc.data))
    for error in errors:
        if isinstance(error.instance, float) and not math.isfinite(error.instance):
            continue  # already reported where it was read
        for path, message in _schema_problems(error):
            problems.add(path, message)
    # Cross-references and the file system are checked on what the schema accepted, so one run
    # reports every problem (unless a whole section is missing or malformed).
    buildable = _buildable(doc.data, errors)
    if buildable is not None:  # the suites' expectations files join expectations.<suite>, their problems routed to them
        _merge_expectations_files(buildable[0], workspace, problems, overrides)
    matrix = build(*buildable, display, workspace, problems, packages_visible) if buildable is not None else None
    plan = Problems(display, doc)
    for suite in matrix.suites if matrix is not None else ():
        if suite.durations_problem:
            plan.add(("suites", suite.name, "shard_seconds"), suite.durations_problem)
    if problems.lines or matrix is None:
        for found in plan.found:  # reported with the rest, in file order
            problems.at_pos(*found)
        raise MatrixError(problems.lines)
    return replace(matrix, plan_problems=tuple(plan.lines))


def _yaml_error(e: yaml.YAMLError, text: str) -> str:
    """`LINE:COL: invalid YAML: ...` for a syntax error, saying so plainly when it is a tab."""
    mark = getattr(e, "problem_mark", None)
    where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    if mark and line[mark.column : mark.column + 1] == "\t":
        return f"{where}: invalid YAML: a tab character; YAML indents with spaces only"
    context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    opened = f" ({context} started at {context_mark.line + 1}:{context_mark.column + 1})" if context and context_mark else ""
    return f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}{opened}"


def _free_text(path: tuple) -> bool:
    """A description or an expectation's reason: the only strings that may hold tabs and newlines."""
    return (len(path) == 3 and path[0] == "variants" and path[2] == "description") or (len(path) >= 2 and path[-2] in ("xfail", "skip") and path[0] == "expectations")


def _check_strings(data: Any, problems: Problems) -> None:
    """No control character in any key or string: most of them reach a BUILD file."""
    stack: list[tuple[tuple, Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in items:
            if isinstance(key, str):
                _check_text(path + (key,), key, "key", False, problems)
            stack.append((path + (key,), child))
        if isinstance(value, str) and path:
            _check_text(path, value, "value", _free_text(path), problems)


def _check_text(path: tuple, text: str, what: str, free: bool, problems: Problems) -> None:
    bad = next((c for c in text if unicodedata.category(c) == "Cc" and not (free and c in "\t\n")), None)
    if bad is not None:
        problems.add(path, f"{dotted(path)}: the {what} {text!r} contains the control character {bad!r}; remove it")


def _schema_problems(error: jsonschema.ValidationError) -> list[tuple[tuple, str]]:
    """(key path to point at, message) for one schema error."""
    path = tuple(error.absolute_path)
    where = dotted(path)
    reasons = len(path) >= 2 and path[-2] in ("xfail", "skip")
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed), key=str)
        what = "top-level key" if not path else "key"
        inside = "" if not path else f" in {where}"
        return [(path + (key,), f"unknown {what} {key!r}{inside}: {did_you_mean(key, allowed)}") for key in extra]
    if error.validator == "pattern" and "propertyNames" in error.relative_schema_path:
        if path and path[-1] in ("xfail", "skip"):
            return [(path + (error.instance,), f"{where}: {error.instance!r} is not a test: use a test file path relative to the suite directory (ending in .py), optionally followed by ::Class::test")]
        return [(path + (error.instance,), f"{where}: {error.instance!r} is not a valid name: use lowercase letters, digits and _, starting with a letter")]
    if reasons and (error.validator in ("minLength", "pattern") or (error.validator == "type" and error.instance is None)):
        return [(path, f"{dotted(path[:-1])}: the reason of {path[-1]!r} is empty; say why (the error you saw)")]
    if error.validator == "required":
        return [(path, f"{where}: {error.message}")]
    if error.validator == "uniqueItems" and isinstance(error.instance, list):
        seen: list[Any] = []
        twice = [(i, v) for i, v in enumerate(error.instance) if v in seen or seen.append(v)]
        return [(path + (i,), f"{where}: {v!r} is listed twice") for i, v in twice]
    if error.validator == "pattern" and path and path[-1] == "library":
        return [(path, f"{where}: {error.instance!r} is not a label of this workspace: use //package:target")]
    if error.validator == "pattern" and path and path[-1] == "expectations_file":
        return [(path, f"{where}: {error.instance!r} is not a .yaml file's path relative to the suite directory")]
    if error.validator == "pattern" and path and path[-1] == "impl":
        return [(path, f"{where}: {error.instance!r} is not of the form package.module:ClassName")]
    if error.validator == "minLength" and error.validator_value == 1:
        return [(path, f"{where}: must not be empty")]
    if error.validator == "oneOf" and path and path[-1] == "shards":
        if isinstance(error.instance, dict):  # report the bad entries of the per-device mapping
            return [(tuple(c.absolute_path), _shard_message(c)) for c in error.context or () if c.relative_schema_path[0] == 1]
        if isinstance(error.instance, int) and not isinstance(error.instance, bool):
            return [(path, f"{where}: shard count {error.instance} is outside 1..50")]
        return [(path, f"{where}: shards must be an integer 1..50 or a mapping device -> integer 1..50, got {error.instance!r}")]
    if error.validator == "type" and isinstance(error.validator_value, str) and error.validator_value in _YAML_TYPES:
        # YAML 1.1 reads on/off/yes/no (any case) as booleans: a device named `on` needs quotes.
        hint = "; YAML reads on/off/yes/no as booleans: quote the word" if isinstance(error.instance, bool) and error.validator_value == "string" else ""
        return [(path, f"{where}: must be {_YAML_TYPES[error.validator_value]}, got {error.instance!r}{hint}")]
    return [(path, f"{where}: {error.message}")]


_YAML_TYPES = {"array": "a list", "object": "a mapping", "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false"}


def _shard_message(error: jsonschema.ValidationError) -> str:
    where = dotted(error.absolute_path)
    if isinstance(error.instance, int) and not isinstance(error.instance, bool):
        return f"{where}: shard count {error.instance} is outside 1..50"
    return f"{where}: shard count must be an integer 1..50, got {error.instance!r}"


def _buildable(data: dict[str, Any], errors: list[jsonschema.ValidationError]) -> tuple[dict[str, Any], set[str]] | None:
    """`data` without the parts the schema rejected (names are kept, so references to them still
    resolve), and the suites to leave out; None when a whole section is missing or malformed."""
    sections = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    sections["expectations"] = copy.deepcopy(sections.get("expectations"))
    invalid_suites: set[str] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        if not path:
            if error.validator == "additionalProperties":
                continue  # unknown top-level keys are ignored by build()
            return None
        section = path[0]
        if len(path) == 1:
            if error.validator == "pattern" and "propertyNames" in error.relative_schema_path:
                continue  # a badly spelled name: keep it so references to it resolve
            if section != "expectations":
                return None
            sections["expectations"] = {}
            continue
        name = path[1]
        if section == "devices":
            sections["devices"][name] = {}
        elif section == "variants":
            sections["variants"][name] = {"impl": "", "description": ""}
        elif section == "suites":
            invalid_suites.add(name)
        elif section == "expectations" and error.validator != "additionalProperties":  # unknown keys are ignored
            entry = path + (error.instance,) if "propertyNames" in error.relative_schema_path else path
            _drop(sections["expectations"], entry[1:])
    return sections, invalid_suites


def _drop(tree: Any, path: tuple) -> None:
    for key in path[:-1]:
        tree = tree.get(key) if isinstance(tree, dict) else None
    if isinstance(tree, dict):
        tree.pop(path[-1], None)


MAX_EXPECTATIONS_BYTES = 16 << 20  # a suite's expectations file: ~50,000 entries of a long reason each


def _merge_expectations_files(sections: dict[str, Any], workspace: Path, problems: Problems, overrides: dict[str, str] | None) -> None:
    """Put each suite's expectations file (suites.<s>.expectations_file) into
    `sections["expectations"][suite]`, where build() checks and models it as if matrix.yaml held it:
    matrix.yaml's Problems route every key path under expectations.<suite> to the file's own, so each
    problem is at `file:LINE:COL`. `overrides`: workspace-relative path -> text to read instead of
    the file (a rewrite being validated before it is written)."""
    expectations = sections.setdefault("expectations", {}) or {}
    sections["expectations"] = expectations
    for name, suite in (sections.get("suites") or {}).items():
        if not isinstance(suite, dict) or not isinstance(suite.get("expectations_file"), str):
            continue
        at = ("suites", name, "expectations_file")
        directory = os.path.normpath(str(suite.get("directory", name))).replace(os.sep, "/")
        relative = os.path.normpath(suite["expectations_file"]).replace(os.sep, "/")
        if relative.startswith("../") or os.path.isabs(relative):
            problems.add(at, f"suites.{name}.expectations_file: {suite['expectations_file']!r} leaves the suite directory; keep the file in it")
            continue
        path = f"{directory}/{relative}"
        if name in expectations:
            problems.add(("expectations", name), f"suite {name!r} keeps its expectations in {path} (suites.{name}.expectations_file); move these entries there")
        text = overrides.get(path) if overrides else None
        if text is None:
            text = _read_expectations(workspace / path, path, at, problems)
        if text is None:
            continue
        expectations[name] = _parse_expectations(text, path, ("expectations", name), problems)


def _read_expectations(file: Path, display: str, at: tuple, problems: Problems) -> str | None:
    try:
        if not file.exists():
            problems.add(at, f"{display} does not exist; create it (an empty file is fine) and let `xfail sync` fill it")
            return None
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            problems.add(at, f"{display} is not a regular file")
            return None
        if info.st_size > MAX_EXPECTATIONS_BYTES:
            problems.add(at, f"{display} is {info.st_size} bytes; an expectations file may have at most {MAX_EXPECTATIONS_BYTES} (16 MiB)")
            return None
        raw = file.read_bytes()
    except OSError as e:
        problems.add(at, f"{display}: cannot read: {e.strerror}")
        return None
    try:
        return decode(raw)
    except YamlProblem as e:
        problems.add(at, f"{display}:{e.line}:{e.col}: {e.message}")
        return None


def _parse_expectations(text: str, display: str, prefix: tuple, problems: Problems) -> dict[str, Any]:
    """The file's variant -> expectations, with its problems (routed from `prefix`); {} where unusable."""
    try:
        doc = load_located(text)
    except (YamlProblem, yaml.YAMLError) as e:
        where = f"{e.line}:{e.col}: {e.message}" if isinstance(e, YamlProblem) else _yaml_error(e, text)
        problems.route(prefix, _Unparsed(display, where))
        return {}
    own = Problems(display, doc)
    problems.route(prefix, own)
    for line, col, message in doc.problems:
        own.at_pos(line, col, message)
    for path, line, col in doc.duplicates:
        own.at_pos(line, col, f"duplicate key {path[-1]!r} in {'.'.join(map(str, path[:-1])) or 'the document'}")
    data = doc.data or {}
    _check_strings({"expectations": {prefix[-1]: data}}, problems)  # as matrix.yaml's expectations.<suite>: routed here
    errors = list(_validator("expectations_file").iter_errors(data))
    for error in errors:
        for path, message in _schema_problems(error):
            own.add(path, message)
    return data if not errors and isinstance(data, dict) else {}


class _Unparsed(Problems):
    """The one problem of a file that is not YAML at all."""

    def __init__(self, display: str, where: str) -> None:
        super().__init__(display, load_located(""))
        line, col, message = where.split(":", 2)
        self.at_pos(int(line), int(col), message.strip())
