"""Load and validate matrix.yaml into an immutable, typed Matrix.

Validation reports every problem at once, each as `matrix.yaml:LINE:COL: what is wrong`, with the
valid choices or a did-you-mean. Structure is checked by the JSON Schema shipped beside this file
(the same one editors use); cross-references and the file system are checked here.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools.matrix.yaml_lines import Located, load_located

SCHEMA_PATH = Path(__file__).with_name("matrix.schema.json")
DEFAULT_TEST_GLOBS = ("test_*.py",)
DEFAULT_TEST_TIMEOUT_S = 120.0


class MatrixError(Exception):
    """matrix.yaml is invalid; `problems` holds one `file:line:col: message` line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Device:
    name: str
    tags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    requires_gpu: bool = False


@dataclass(frozen=True)
class Variant:
    name: str
    impl: str
    description: str
    applies_to: tuple[str, ...] = ()  # empty: every entry point the class supports


@dataclass(frozen=True)
class Expectations:
    """Node id -> reason, for one (suite, variant, device) cell."""

    xfail: tuple[tuple[str, str], ...] = ()
    skip: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    directory: str
    test_files: tuple[str, ...]  # workspace-relative, sorted
    data_files: tuple[str, ...]  # workspace-relative, sorted
    variants: tuple[str, ...]
    devices: tuple[str, ...]
    shards: tuple[tuple[str, int], ...]  # device -> shard count
    size: str = "medium"
    test_timeout_s: float = DEFAULT_TEST_TIMEOUT_S
    tags: tuple[str, ...] = ()
    default_device: bool = False

    def shard_count(self, device: str) -> int:
        return dict(self.shards).get(device, 1)


@dataclass(frozen=True)
class Cell:
    """One (suite, variant, device): one Bazel target."""

    suite: Suite
    variant: Variant
    device: Device
    expectations: Expectations

    @property
    def target_name(self) -> str:
        return f"{self.suite.name}_{self.variant.name}_{self.device.name}"

    @property
    def label(self) -> str:
        return f"//{self.suite.directory}:{self.target_name}"

    @property
    def tags(self) -> tuple[str, ...]:
        tags = [f"suite:{self.suite.name}", f"variant:{self.variant.name}", f"device:{self.device.name}"]
        if self.device.requires_gpu:
            tags.append("requires-gpu")
        tags += [*self.device.tags, *self.suite.tags]
        return tuple(dict.fromkeys(tags))


@dataclass(frozen=True)
class Matrix:
    path: str
    devices: tuple[Device, ...]
    variants: tuple[Variant, ...]
    suites: tuple[Suite, ...]
    expectations: dict[tuple[str, str, str], Expectations] = field(default_factory=dict, compare=False, hash=False)

    def device(self, name: str) -> Device:
        return next(d for d in self.devices if d.name == name)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def cells(self) -> list[Cell]:
        return [
            Cell(suite, self.variant(v), self.device(d), self.expectations.get((suite.name, v, d), Expectations()))
            for suite in self.suites
            for v in suite.variants
            for d in suite.devices
        ]


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid: {', '.join(sorted(map(str, choices))) or '(none)'}"


def load(path: str | os.PathLike[str], workspace: str | os.PathLike[str] | None = None) -> Matrix:
    """Read matrix.yaml at `path`; raise MatrixError listing every problem."""
    path = Path(path)
    workspace = Path(workspace) if workspace is not None else path.parent
    display = os.path.relpath(path, workspace) if path.is_absolute() else str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise MatrixError([f"{display}: cannot read: {e.strerror}"]) from None
    return parse(text, display, workspace)


def parse(text: str, display: str, workspace: Path) -> Matrix:
    try:
        doc = load_located(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
        raise MatrixError([f"{display}:{where}: invalid YAML: {getattr(e, 'problem', e)}"]) from None
    problems = _Problems(display, doc)
    for path, line, col in doc.duplicates:
        problems.at_pos(line, col, f"duplicate key {path[-1]!r} in {'.'.join(map(str, path[:-1])) or 'the document'}")
    if not isinstance(doc.data, dict):
        problems.add((), "the document must be a mapping with keys devices, variants, suites, expectations")
        raise MatrixError(problems.lines)
    for error in sorted(_validator().iter_errors(doc.data), key=lambda e: doc.where(tuple(e.absolute_path))):
        problems.add(tuple(error.absolute_path), _schema_message(error))
    if problems.lines:
        raise MatrixError(problems.lines)
    matrix = _build(doc.data, display, workspace, problems)
    if problems.lines:
        raise MatrixError(problems.lines)
    return matrix


def _schema_message(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "the document"
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown key {extra[0]!r} in {where}: {did_you_mean(extra[0], allowed)}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "pattern" and error.absolute_path and error.absolute_path[-1] in ("impl",):
        return f"{where}: {error.instance!r} is not of the form package.module:ClassName"
    if error.validator == "pattern" and error.validator_value == "\\S":
        return f"{where}: the reason is empty; say why (the error you saw)"
    if error.validator == "minLength" and error.validator_value == 1:
        return f"{where}: must not be empty"
    if error.validator == "oneOf" and "shards" in error.absolute_path:
        return f"{where}: shards must be an integer 1..50 or a mapping device -> integer 1..50, got {error.instance!r}"
    if error.validator in ("minimum", "maximum") and "shards" in error.absolute_path:
        return f"{where}: shard count {error.instance!r} is outside 1..50"
    return f"{where}: {error.message}"


class _Problems:
    def __init__(self, display: str, doc: Located):
        self.display, self.doc, self.lines = display, doc, []

    def add(self, path: tuple, message: str) -> None:
        self.at_pos(*self.doc.where(path), message)

    def at_pos(self, line: int, col: int, message: str) -> None:
        self.lines.append(f"{self.display}:{line}:{col}: {message}")


def _inside(workspace: Path, relative: str) -> Path | None:
    """The resolved path, or None when `relative` leaves the workspace."""
    if os.path.isabs(relative):
        return None
    # Lexical, not resolve(): under Bazel the files are symlinks into the source tree.
    root = Path(os.path.normpath(os.path.abspath(workspace)))
    resolved = Path(os.path.normpath(root / relative))
    return resolved if resolved == root or root in resolved.parents else None


def _globs(workspace: Path, directory: str, patterns: list[str]) -> list[str]:
    found: set[str] = set()
    for pattern in patterns:
        for hit in glob.glob(os.path.join(workspace, directory, pattern), recursive=True):
            if os.path.isfile(hit) and "__pycache__" not in hit:
                found.add(os.path.relpath(hit, workspace).replace(os.sep, "/"))
    return sorted(found)


def _build(data: dict[str, Any], display: str, workspace: Path, problems: _Problems) -> Matrix:
    devices = tuple(
        Device(name, tuple(d.get("tags", ())), tuple(sorted(d.get("env", {}).items())), bool(d.get("requires_gpu", False)))
        for name, d in data["devices"].items()
    )
    variants = tuple(
        Variant(name, v["impl"], v["description"], tuple(v.get("applies_to", ()))) for name, v in data["variants"].items()
    )
    device_names = [d.name for d in devices]
    variant_names = [v.name for v in variants]
    suites = []
    for name, s in data["suites"].items():
        at = ("suites", name)
        directory = s.get("directory", name).rstrip("/")
        if _inside(workspace, directory) is None:
            problems.add(at + ("directory",), f"directory {directory!r} leaves the workspace; use a path inside it")
            continue
        if not (workspace / directory).is_dir():
            problems.add(at + ("directory",) if "directory" in s else at, f"directory {directory!r} does not exist")
            continue
        for key in ("tests", "data"):
            for i, pattern in enumerate(s.get(key, ())):
                if _inside(workspace, os.path.join(directory, pattern)) is None or ".." in Path(pattern).parts:
                    problems.add(at + (key, i), f"pattern {pattern!r} leaves the suite directory")
        tests = _globs(workspace, directory, s.get("tests", list(DEFAULT_TEST_GLOBS)))
        if not tests:
            problems.add(at + ("tests",) if "tests" in s else at, f"no test file matches {s.get('tests', list(DEFAULT_TEST_GLOBS))} in {directory}/")
        for key, names, valid in (("variants", s["variants"], variant_names), ("devices", s["devices"], device_names)):
            for i, n in enumerate(names):
                if n not in valid:
                    problems.add(at + (key, i), f"unknown {key[:-1]} {n!r}: {did_you_mean(n, valid)}")
        shards = s.get("shards", 1)
        if isinstance(shards, dict):
            for dev in shards:
                if dev not in s["devices"]:
                    problems.add(at + ("shards", dev), f"shards for device {dev!r} which the suite does not run on: {did_you_mean(dev, s['devices'])}")
            shard_map = tuple((d, int(shards.get(d, 1))) for d in s["devices"])
        else:
            shard_map = tuple((d, int(shards)) for d in s["devices"])
        suites.append(
            Suite(
                name=name,
                directory=directory,
                test_files=tuple(tests),
                data_files=tuple(f for f in _globs(workspace, directory, s.get("data", [])) if f not in tests),
                variants=tuple(s["variants"]),
                devices=tuple(s["devices"]),
                shards=shard_map,
                size=s.get("size", "medium"),
                test_timeout_s=float(s.get("test_timeout_s", DEFAULT_TEST_TIMEOUT_S)),
                tags=tuple(s.get("tags", ())),
                default_device=bool(s.get("default_device", False)),
            )
        )
    expectations = _expectations(data.get("expectations") or {}, suites, data["suites"], problems)
    return Matrix(display, devices, variants, tuple(suites), expectations)


def _expectations(raw: dict, suites: list[Suite], raw_suites: dict, problems: _Problems) -> dict:
    by_name = {s.name: s for s in suites}
    out: dict[tuple[str, str, str], Expectations] = {}
    for suite_name, per_variant in raw.items():
        at = ("expectations", suite_name)
        if suite_name not in raw_suites:
            problems.add(at, f"unknown suite {suite_name!r}: {did_you_mean(suite_name, list(raw_suites))}")
            continue
        suite = by_name.get(suite_name)
        if suite is None:  # the suite itself is invalid and already reported
            continue
        for variant_name, spec in per_variant.items():
            vat = at + (variant_name,)
            if variant_name not in suite.variants:
                problems.add(vat, f"variant {variant_name!r} is not run by suite {suite_name!r}: {did_you_mean(variant_name, suite.variants)}")
                continue
            for device_name in spec.get("devices", {}):
                if device_name not in suite.devices:
                    problems.add(vat + ("devices", device_name), f"device {device_name!r} is not run by suite {suite_name!r}: {did_you_mean(device_name, suite.devices)}")
            for device_name in suite.devices:
                specific = spec.get("devices", {}).get(device_name, {})
                merged = {}
                for kind in ("xfail", "skip"):
                    entries = {**spec.get(kind, {}), **specific.get(kind, {})}
                    merged[kind] = tuple(sorted(entries.items()))
                    for node_id in entries:
                        where = vat + (("devices", device_name, kind, node_id) if node_id in specific.get(kind, {}) else (kind, node_id))
                        _check_node_id(suite, node_id, where, problems)
                both = set(dict(merged["xfail"])) & set(dict(merged["skip"]))
                for node_id in sorted(both):
                    problems.add(vat, f"{node_id!r} is both xfail and skip for device {device_name!r}; keep one")
                out[(suite_name, variant_name, device_name)] = Expectations(merged["xfail"], merged["skip"])
    # Report each problem once even though every device revisits the shared entries.
    problems.lines[:] = list(dict.fromkeys(problems.lines))
    return out


def _check_node_id(suite: Suite, node_id: str, where: tuple, problems: _Problems) -> None:
    test_file = f"{suite.directory}/{node_id.split('::', 1)[0]}"
    if test_file not in suite.test_files:
        choices = [f[len(suite.directory) + 1 :] for f in suite.test_files]
        problems.add(where, f"test file {node_id.split('::', 1)[0]!r} of {node_id!r} is not a test file of suite {suite.name!r}: {did_you_mean(node_id.split('::', 1)[0], choices)}")
