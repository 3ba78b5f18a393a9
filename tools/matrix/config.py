"""Load and validate matrix.yaml into an immutable, typed Matrix.

Validation reports every problem at once, each as `matrix.yaml:LINE:COL: what is wrong`, with the
valid choices or a did-you-mean. Structure is checked by the JSON Schema shipped beside this file
(the same one editors use); cross-references and the file system are checked here.
"""

from __future__ import annotations

import copy
import difflib
import glob
import json
import math
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools.matrix import durations, pytest_args, shard_plan, variant_library
from tools.matrix.yaml_lines import Located, YamlProblem, decode, load_located

SCHEMA_PATH = Path(__file__).with_name("matrix.schema.json")
DEFAULT_TEST_GLOBS = ("test_*.py",)
DEFAULT_TEST_TIMEOUT_S = 120.0
MAX_BYTES = 1 << 20  # a real matrix.yaml is a few KiB; refuse to spend memory on more
MAX_GLOB_ENTRIES = 100_000  # files and directories a `**` pattern may walk through
# Bazel's label rules (https://bazel.build/concepts/labels), the documented sets: package names,
# and target names (the suite's files are targets of its package). `$` is left out of the latter:
# Bazel expands it in the `args` the file names travel in.
PACKAGE_NAME = re.compile(r"[A-Za-z0-9/._@-]+")
FILE_TARGET_NAME = re.compile(r"[A-Za-z0-9!%@^_\"#&'()*+,;<=>?\[\]{|}~/.-]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    library: str = ""  # the Bazel label of the py_library holding impl's module (variant_library.py)
    generated_library: variant_library.GeneratedLibrary | None = None  # when generate writes that library
    transform_check_off: str = ""  # matrix.yaml transform_check.disabled: why its cells skip the differential check


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
    shards: tuple[tuple[str, int], ...]  # device -> fixed shard count (unless shard_seconds)
    size: str = "medium"
    test_timeout_s: float = DEFAULT_TEST_TIMEOUT_S
    tags: tuple[str, ...] = ()
    default_device: bool = False
    shard_seconds: float | None = None  # shard by recorded durations, about this long per shard
    recorded: durations.Recorded = field(default_factory=dict, compare=False, hash=False)
    durations_problem: str = ""  # why test_durations.json is unreadable (see Matrix.plan_problems)
    pytest_args: tuple[str, ...] = ()  # extra pytest options (checked by tools/matrix/pytest_args.py)
    granularity: str = "cell"  # GRANULARITIES: "cell", one target per cell; "file", one per (cell, test file) (Cell.targets)
    transform_check_off: str = ""  # matrix.yaml transform_check.disabled: why its cells skip the differential check

    @property
    def durations_file(self) -> str:
        return f"{self.directory}/{durations.FILE_NAME}"


GRANULARITIES = ("cell", "file")  # matrix.schema.json's enum for suites.*.granularity


def test_file_of(test_id: str) -> str:
    """The suite-relative file of a node id (`test_x.py::Class::test` -> `test_x.py`)."""
    return test_id.split("::", 1)[0]


@dataclass(frozen=True)
class Cell:
    """One (suite, variant, device): one column of the report. Bazel runs it as one target, or one
    target per test file (`granularity: file`) grouped by a test_suite of the cell's name, so
    `cell.label` selects the whole cell either way."""

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
    def transform_check_off(self) -> str:
        """Why the cell's differential check is off ("": on): the variant's reason, else the suite's."""
        if self.variant.transform_check_off:
            return f"variants.{self.variant.name}: {self.variant.transform_check_off}"
        return f"suites.{self.suite.name}: {self.suite.transform_check_off}" if self.suite.transform_check_off else ""

    @cached_property
    def recorded_durations(self) -> dict[str, float]:
        return durations.for_cell(self.suite.recorded, self.variant.name, self.device.name)

    @cached_property
    def targets(self) -> tuple[Target, ...]:
        """The py_tests that run the cell (see Target)."""
        if self.suite.granularity == "file":
            return tuple(Target(self, f"{self.target_name}/{file[: -len('.py')] if file.endswith('.py') else file}", (file,))
                         for file in relative(self.suite.test_files, self.suite.directory))  # fmt: skip
        return (Target(self, self.target_name, relative(self.suite.test_files, self.suite.directory)),)

    @cached_property
    def _target_by_file(self) -> dict[str, Target]:
        return {file: target for target in self.targets for file in target.test_files}

    def target_of(self, test_id: str) -> Target:
        """The target that runs `test_id` (the cell's first one for an id of no known file)."""
        return self._target_by_file.get(test_file_of(test_id), self.targets[0])

    @property
    def tags(self) -> tuple[str, ...]:
        tags = [f"suite:{self.suite.name}", f"variant:{self.variant.name}", f"device:{self.device.name}"]
        if self.device.requires_gpu:
            tags.append("requires-gpu")
        tags += [*self.device.tags, *self.suite.tags]
        return tuple(dict.fromkeys(tags))


@dataclass(frozen=True)
class Target:
    """One py_test of a cell: the whole cell, or one test file of it (`granularity: file`, named
    `<cell>/<file without .py>`). Shards and expectations are per target, so editing one file's tests
    or entries reruns only its targets."""

    cell: Cell
    name: str
    test_files: tuple[str, ...]  # relative to the suite directory

    @property
    def label(self) -> str:
        return f"//{self.cell.suite.directory}:{self.name}"

    def _mine(self, test_id: str) -> bool:
        return len(self.cell.targets) == 1 or test_file_of(test_id) in self.test_files

    @cached_property
    def recorded_durations(self) -> dict[str, float]:
        return {t: s for t, s in self.cell.recorded_durations.items() if self._mine(t)}

    @cached_property
    def shard_count(self) -> int:
        """Fixed by `shards`, or planned from the recorded durations with `shard_seconds`."""
        fixed = dict(self.cell.suite.shards).get(self.cell.device.name, 1)
        return shard_plan.cell_shard_count(fixed, self.cell.suite.shard_seconds, self.recorded_durations)

    @cached_property
    def expectations(self) -> Expectations:
        """The cell's entries that name this target's files, as defs.bzl hands them to it (checked by
        tests/test_generate.py): an entry matching no test of a target fails that target."""
        xfail, skip = self.cell.expectations.xfail, self.cell.expectations.skip
        return Expectations(tuple(e for e in xfail if self._mine(e[0])), tuple(e for e in skip if self._mine(e[0])))


@dataclass(frozen=True)
class Matrix:
    path: str
    devices: tuple[Device, ...]
    variants: tuple[Variant, ...]
    suites: tuple[Suite, ...]
    expectations: dict[tuple[str, str, str], Expectations] = field(default_factory=dict, compare=False, hash=False)
    located: Located | None = field(default=None, compare=False, hash=False, repr=False)  # where each key is
    # `matrix.yaml:L:C: ...` for each unreadable test_durations.json, planned as if nothing were
    # recorded: an error for every command but `durations`, which rewrites the file (cli.load_matrix).
    plan_problems: tuple[str, ...] = field(default=(), compare=False, hash=False)

    def at(self, path: tuple, message: str) -> str:
        """`matrix.yaml:LINE:COL: message`, pointing at key `path`: for checks made after loading."""
        line, col = self.located.where(path) if self.located else (1, 1)
        return f"{self.path}:{line}:{col}: {message}"

    @cached_property
    def _devices(self) -> dict[str, Device]:
        return {d.name: d for d in self.devices}

    @cached_property
    def _variants(self) -> dict[str, Variant]:
        return {v.name: v for v in self.variants}

    def device(self, name: str) -> Device:
        return self._devices[name]

    def variant(self, name: str) -> Variant:
        return self._variants[name]

    @cached_property
    def _cells(self) -> tuple[Cell, ...]:
        devices, variants = self._devices, self._variants
        return tuple(
            Cell(suite, variants[v], devices[d], self.expectations.get((suite.name, v, d), Expectations()))
            for suite in self.suites
            for v in suite.variants
            for d in suite.devices
        )

    def cells(self) -> list[Cell]:
        """Every (suite, variant, device) in matrix.yaml order."""
        return list(self._cells)

    def targets(self) -> list[Target]:
        """Every py_test of every cell, in matrix.yaml order."""
        return [target for cell in self._cells for target in cell.targets]


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid: {', '.join(sorted(map(str, choices))) or '(none)'}"


def load(path: str | os.PathLike[str], workspace: str | os.PathLike[str] | None = None, packages_visible: bool = True) -> Matrix:
    """Read matrix.yaml at `path`; raise MatrixError listing every problem. A malformed
    test_durations.json alone does not raise: it is in `Matrix.plan_problems`. Without
    `packages_visible` (a Bazel test's runfiles hold no BUILD file of other packages), variant
    libraries are taken as matrix.yaml names them: Bazel checks the labels when it loads the cells."""
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
    return parse(text, display, workspace, packages_visible)


def parse(text: str, display: str, workspace: Path, packages_visible: bool = True) -> Matrix:
    try:
        doc = load_located(text)
    except YamlProblem as e:
        raise MatrixError([f"{display}:{e.line}:{e.col}: {e.message}"]) from None
    except yaml.YAMLError as e:
        raise MatrixError([f"{display}:{_yaml_error(e, text)}"]) from None
    problems = _Problems(display, doc)
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
    matrix = _build(*buildable, display, workspace, problems, packages_visible) if buildable is not None else None
    plan = _Problems(display, doc)
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


def _check_strings(data: Any, problems: _Problems) -> None:
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


def _check_text(path: tuple, text: str, what: str, free: bool, problems: _Problems) -> None:
    bad = next((c for c in text if unicodedata.category(c) == "Cc" and not (free and c in "\t\n")), None)
    if bad is not None:
        problems.add(path, f"{_dotted(path)}: the {what} {text!r} contains the control character {bad!r}; remove it")


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path) or "top level"


def _schema_problems(error: jsonschema.ValidationError) -> list[tuple[tuple, str]]:
    """(key path to point at, message) for one schema error."""
    path = tuple(error.absolute_path)
    where = _dotted(path)
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
        return [(path, f"{_dotted(path[:-1])}: the reason of {path[-1]!r} is empty; say why (the error you saw)")]
    if error.validator == "required":
        return [(path, f"{where}: {error.message}")]
    if error.validator == "uniqueItems" and isinstance(error.instance, list):
        seen: list[Any] = []
        twice = [(i, v) for i, v in enumerate(error.instance) if v in seen or seen.append(v)]
        return [(path + (i,), f"{where}: {v!r} is listed twice") for i, v in twice]
    if error.validator == "pattern" and path and path[-1] == "library":
        return [(path, f"{where}: {error.instance!r} is not a label of this workspace: use //package:target")]
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
    where = _dotted(error.absolute_path)
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
                continue  # unknown top-level keys are ignored by _build
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


class _Problems:
    def __init__(self, display: str, doc: Located):
        self.display, self.doc = display, doc
        self._found: list[tuple[int, int, str]] = []

    def add(self, path: tuple, message: str) -> None:
        self.at_pos(*self.doc.where(path), message)

    def at_pos(self, line: int, col: int, message: str) -> None:
        self._found.append((line, col, message))

    @property
    def found(self) -> list[tuple[int, int, str]]:
        return list(self._found)

    @property
    def lines(self) -> list[str]:
        """Every problem once, in file order."""
        found = sorted(dict.fromkeys(self._found), key=lambda p: (p[0], p[1]))
        return [f"{self.display}:{line}:{col}: {message}" for line, col, message in found]


def _inside(workspace: Path, relative: str) -> Path | None:
    """The resolved path, or None when `relative` leaves the workspace."""
    if os.path.isabs(relative):
        return None
    # Lexical, not resolve(): under Bazel the files are symlinks into the source tree.
    root = Path(os.path.normpath(os.path.abspath(workspace)))
    resolved = Path(os.path.normpath(root / relative))
    return resolved if resolved == root or root in resolved.parents else None


def _globs(workspace: Path, directory: str, patterns: list[str]) -> dict[str, int]:
    """Workspace-relative file -> the index of the first pattern that matched it, sorted by file."""
    found: dict[str, int] = {}
    for i, pattern in enumerate(patterns):
        for hit in glob.glob(os.path.join(workspace, directory, pattern), recursive=True):
            if os.path.isfile(hit) and "__pycache__" not in hit:
                found.setdefault(os.path.relpath(hit, workspace).replace(os.sep, "/"), i)
    return dict(sorted(found.items()))


def _glob_hazard(top: Path) -> str:
    """Why a `**` pattern must not walk `top` (glob follows directory symlinks: a link back to an
    ancestor recurses until the path is too long, duplicating every file, or forever with two
    such links), or "" when it may. Walks without recursion, at most MAX_GLOB_ENTRIES entries."""
    stack: list[tuple[str, tuple[str, ...]]] = [(str(top), (os.path.realpath(top),))]
    seen = 0
    while stack:
        path, ancestors = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > MAX_GLOB_ENTRIES:
                return f"more than {MAX_GLOB_ENTRIES} files and directories under it; give patterns without **"
            if entry.is_dir():  # follows symlinks, as glob does
                real = os.path.realpath(entry.path)
                if real in ancestors:
                    link = os.path.relpath(entry.path, top).replace(os.sep, "/")
                    return f"the symlink {link!r} leads back to {os.path.relpath(real, top).replace(os.sep, '/')!r} above it (a loop); remove the link or give patterns without **"
                stack.append((entry.path, ancestors + (real,)))
    return ""


def _build(data: dict[str, Any], invalid_suites: set[str], display: str, workspace: Path, problems: _Problems, packages_visible: bool = True) -> Matrix:
    devices = tuple(
        Device(name, tuple(d.get("tags", ())), tuple(sorted(d.get("env", {}).items())), bool(d.get("requires_gpu", False)))
        for name, d in data["devices"].items()
    )
    for device in devices:
        for key, value in device.env:
            at = ("devices", device.name, "env", key)
            if not ENV_NAME.fullmatch(key):
                problems.add(at, f"env name {key!r} is not a variable name: use letters, digits and _, not starting with a digit")
            if "$" in value:
                problems.add(at, f"env value {value!r} has a '$', which Bazel expands (make variables, $(location)); remove it")
    every_directory = {os.path.normpath(str(s.get("directory", n))).replace(os.sep, "/") for n, s in data["suites"].items() if isinstance(s, dict)}
    variants = _variants(data, workspace, every_directory, problems, packages_visible)
    device_names = [d.name for d in devices]
    variant_names = [v.name for v in variants]
    suites = []
    directories: dict[str, str] = {}  # directory -> suite
    for name, s in data["suites"].items():
        if name in invalid_suites:  # already reported by the schema
            continue
        at = ("suites", name)
        directory = s.get("directory", name)
        if _inside(workspace, directory) is None:
            problems.add(at + ("directory",), f"directory {directory!r} leaves the workspace; use a path inside it")
            continue
        directory = os.path.normpath(directory).replace(os.sep, "/")  # `./x/`, `x/../y`: labels need the plain form
        if directory == ".":
            problems.add(at + ("directory",), f"directory {s['directory']!r} is the workspace root; give the suite its own directory (its BUILD.bazel is generated)")
            continue
        if directory in directories:
            problems.add(at + ("directory",) if "directory" in s else at, f"directory {directory!r} is already the directory of suite {directories[directory]!r}; each suite needs its own (its BUILD.bazel is generated)")
            continue
        directories[directory] = name
        dir_at = at + ("directory",) if "directory" in s else at
        if not PACKAGE_NAME.fullmatch(directory):
            problems.add(dir_at, f"directory {directory!r} is not a valid Bazel package name: use letters, digits and / - . @ _")
            continue
        if not (workspace / directory).is_dir():
            problems.add(dir_at, f"directory {directory!r} does not exist")
            continue
        real = (workspace / directory).resolve()
        if not real.is_relative_to(workspace.resolve()):
            problems.add(dir_at, f"directory {directory!r} is a symlink (or passes through one) to {str(real)!r}, outside the workspace; its BUILD.bazel would be written there: use a directory inside the workspace")
            continue
        patterns = {key: s.get(key, list(DEFAULT_TEST_GLOBS) if key == "tests" else []) for key in ("tests", "data")}
        escaping = False
        for key in ("tests", "data"):
            for i, pattern in enumerate(s.get(key, ())):
                if _inside(workspace, os.path.join(directory, pattern)) is None or ".." in Path(pattern).parts:
                    problems.add(at + (key, i), f"pattern {pattern!r} leaves the suite directory")
                    escaping = True
        if escaping:
            continue
        recursive = [(key, i) for key in ("tests", "data") for i, p in enumerate(patterns[key]) if "**" in p]
        hazard = _glob_hazard(real) if recursive else ""
        if hazard:
            key, i = recursive[0]
            problems.add(at + (key, i) if key in s else at, f"pattern {patterns[key][i]!r} cannot be expanded in {directory}/: {hazard}")
            continue
        found = {key: _globs(workspace, directory, patterns[key]) for key in ("tests", "data")}
        for key, files in found.items():
            for file, i in files.items():
                _check_file_name(file[len(directory) + 1 :], at + (key, i) if key in s else at, problems)
                _check_same_package(workspace, directory, file, every_directory, at + (key, i) if key in s else at, problems)
        tests = list(found["tests"])
        if not tests:
            problems.add(at + ("tests",) if "tests" in s else at, f"no test file matches {patterns['tests']} in {directory}/")
        for key, names, valid in (("variants", s["variants"], variant_names), ("devices", s["devices"], device_names)):
            for i, n in enumerate(names):
                if n not in valid:
                    problems.add(at + (key, i), f"unknown {key[:-1]} {n!r}: {did_you_mean(n, valid)}")
        for i, message in pytest_args.problems(s.get("pytest_args", [])):
            problems.add(at + ("pytest_args", i), f"suites.{name}.pytest_args.{i}: {message}")
        shards = s.get("shards", 1)
        if "shards" in s and "shard_seconds" in s:
            problems.add(at + ("shard_seconds",), "give either shards (fixed counts) or shard_seconds (counts planned from recorded durations), not both")
        recorded = shard_plan.read(workspace, directory) if "shard_seconds" in s else shard_plan.SuiteDurations()
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
                data_files=tuple(f for f in found["data"] if f not in tests),
                variants=tuple(s["variants"]),
                devices=tuple(s["devices"]),
                shards=shard_map,
                size=s.get("size", "medium"),
                test_timeout_s=float(s.get("test_timeout_s", DEFAULT_TEST_TIMEOUT_S)),
                tags=tuple(s.get("tags", ())),
                default_device=bool(s.get("default_device", False)),
                shard_seconds=float(s["shard_seconds"]) if "shard_seconds" in s else None,
                recorded=recorded.recorded,
                durations_problem=recorded.problem,
                pytest_args=tuple(s.get("pytest_args", ())),
                granularity=s.get("granularity", "cell"),
                transform_check_off=(s.get("transform_check") or {}).get("disabled", ""),
            )
        )
    expectations = _expectations(data.get("expectations") or {}, suites, data["suites"], problems)
    matrix = Matrix(display, devices, variants, tuple(suites), expectations, located=problems.doc)
    _check_unique_names(matrix, problems)
    return matrix


def _variants(data: dict[str, Any], workspace: Path, suite_directories: set[str], problems: _Problems, packages_visible: bool) -> tuple[Variant, ...]:
    """The variants, each with the Bazel library its cells depend on (variant_library.py)."""
    variants = []
    for name, v in data["variants"].items():
        module = v["impl"].partition(":")[0]
        resolved = variant_library.resolve(module, v.get("library"), workspace, suite_directories, packages_visible) if module else variant_library.Resolved()
        if resolved.problem:
            problems.add(("variants", name, resolved.problem_key), f"variants.{name}.{resolved.problem_key}: {resolved.problem}")
        check_off = (v.get("transform_check") or {}).get("disabled", "")
        variants.append(Variant(name, v["impl"], v["description"], tuple(v.get("applies_to", ())), resolved.label, resolved.generated, check_off))
    return tuple(variants)


def relative(paths: tuple[str, ...], directory: str) -> tuple[str, ...]:
    """Workspace-relative paths of a suite's files, relative to its directory."""
    return tuple(p[len(directory) + 1 :] for p in paths)


def _check_file_name(name: str, where: tuple, problems: _Problems) -> None:
    """A suite file becomes a target of the suite's package (and an argument of its targets)."""
    if "$" in name:
        problems.add(where, f"file {name!r}: Bazel expands '$' in target arguments (make variables); rename the file")
    elif not FILE_TARGET_NAME.fullmatch(name):
        bad = next(c for c in name if not FILE_TARGET_NAME.fullmatch(c))
        problems.add(where, f"file {name!r}: Bazel does not allow {bad!r} in a file's label; rename the file (letters, digits and !%@^_\"#&'()*+,;<=>?[]{{|}}~/.- are allowed)")


def _check_same_package(workspace: Path, directory: str, file: str, suite_directories: set[str], where: tuple, problems: _Problems) -> None:
    """A file below another package (a directory with a BUILD file, or another suite's, whose BUILD
    file generate writes) is no file of this suite's package: Bazel refuses the label."""
    parts = file[len(directory) + 1 :].split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        below = "/".join([directory, *parts[:depth]])
        if below in suite_directories or any((workspace / below / build).is_file() for build in ("BUILD", "BUILD.bazel")):
            problems.add(where, f"file {file!r} is in package {below!r}, below the suite's package {directory!r}: Bazel cannot take it as a file of the suite; narrow the pattern or move the file")
            return


def _check_unique_names(matrix: Matrix, problems: _Problems) -> None:
    """Every generated target name once per package: `<suite>_<variant>_<device>` collides when
    names contain `_` (variant base_b on cpu vs variant base on b_cpu)."""
    # Imported here: generate imports this module.
    from tools.matrix.generate import CHECK_TARGET, SUITE_FILES

    seen: dict[tuple[str, str], str] = {("", CHECK_TARGET): "the generated-files check"}
    for suite in matrix.suites:
        seen[suite.directory, SUITE_FILES] = f"the file group of suite {suite.name!r}"
    for suite in matrix.suites:  # not matrix.cells(): unknown variants and devices are reported elsewhere
        for variant in suite.variants:
            for index, device in enumerate(suite.devices):
                name = f"{suite.name}_{variant}_{device}"  # Cell.target_name
                key, what = (suite.directory, name), f"variant {variant!r} on device {device!r} of suite {suite.name!r}"
                if key in seen:
                    problems.add(("suites", suite.name, "devices", index), f"target name {name!r} of {what} is also the name of {seen[key]}; rename a variant or device")
                seen.setdefault(key, what)
    for prefix, names in (("variant", [v.name for v in matrix.variants]), ("device", [d.name for d in matrix.devices]), ("suite", [s.name for s in matrix.suites])):
        for name in names:
            key = ("", f"{prefix}_{name}")
            if key in seen:
                problems.add((f"{prefix}s", name), f"test suite name {key[1]!r} is also the name of {seen[key]}; rename the {prefix}")
            seen.setdefault(key, f"the test suite of {prefix} {name!r}")
    libraries: dict[str, variant_library.GeneratedLibrary] = {}
    for variant in matrix.variants:
        library = variant.generated_library
        if library is None or libraries.get(library.name) == library:
            continue
        key = ("", library.name)
        if key in seen:
            problems.add(("variants", variant.name, "impl"), f"the library generate writes for {variant.impl!r}, //:{library.name}, would have the name of {seen[key]}; "
                                                             "rename the module's directory or give the variant a `library`")  # fmt: skip
        seen.setdefault(key, f"the library of variant {variant.name!r}")
        libraries[library.name] = library
    for suite in (s for s in matrix.suites if s.granularity == "file"):  # `<cell>/a` is a file in Bazel's output tree: no `<cell>/a/b`
        stems = {f[: -len(".py")] for f in suite.test_files if f.endswith(".py")}
        for file in suite.test_files:
            clash = next((f"{d}.py" for d in _parents(file) if d in stems), None)
            if clash:
                problems.add(("suites", suite.name, "granularity"), f"granularity file: {clash} and {file} would give one target inside another's name; rename one")


def _parents(file: str) -> list[str]:
    """`a/b/c.py` -> [`a`, `a/b`]."""
    parts = file.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


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
            conflicts: dict[tuple, list[str]] = {}  # the later of the two entries -> devices
            for device_name in suite.devices:
                specific = spec.get("devices", {}).get(device_name, {})
                merged, where = {}, {}
                for kind in ("xfail", "skip"):
                    entries = {**spec.get(kind, {}), **specific.get(kind, {})}
                    merged[kind] = tuple(sorted(entries.items()))
                    for node_id in entries:
                        where[kind, node_id] = vat + (("devices", device_name, kind, node_id) if node_id in specific.get(kind, {}) else (kind, node_id))
                        _check_node_id(suite, node_id, where[kind, node_id], problems)  # once: problems are deduplicated
                for node_id in sorted(set(dict(merged["xfail"])) & set(dict(merged["skip"]))):
                    later = max(where["xfail", node_id], where["skip", node_id], key=problems.doc.where)
                    conflicts.setdefault(later, []).append(device_name)
                out[(suite_name, variant_name, device_name)] = Expectations(merged["xfail"], merged["skip"])
            for later, devices in conflicts.items():
                on = "" if len(devices) == len(suite.devices) else f" on device {', '.join(map(repr, devices))}"
                problems.add(later, f"{later[-1]!r} is both xfail and skip{on}; keep one")
    return out


def _check_node_id(suite: Suite, node_id: str, where: tuple, problems: _Problems) -> None:
    test_file = f"{suite.directory}/{node_id.split('::', 1)[0]}"
    if test_file not in suite.test_files:
        choices = [f[len(suite.directory) + 1 :] for f in suite.test_files]
        problems.add(where, f"test file {node_id.split('::', 1)[0]!r} of {node_id!r} is not a test file of suite {suite.name!r}: {did_you_mean(node_id.split('::', 1)[0], choices)}")
