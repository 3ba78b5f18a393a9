"""From what the schema accepted to a Matrix: suites and their files (globbed as Bazel globs them,
every name checked against what Bazel takes: tools/matrix/bazel_names.py), variants and their
libraries, expectations, the names of the generated targets."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from tools.matrix import bazel_names, expectations, pytest_args, shard_plan, target_names, variant_library
from tools.matrix.config.model import DEFAULT_TEST_TIMEOUT_S, Device, Expectations, Matrix, Suite, Variant
from tools.matrix.config.problems import Problems, did_you_mean
from tools.matrix.runtime.cell_config import MAX_ENV_STRING

DEFAULT_TEST_GLOBS = ("test_*.py",)
MAX_GLOB_ENTRIES = 100_000  # files and directories the suite's glob may walk through
# Bazel's label rules for package names (https://bazel.build/concepts/labels); file and target names:
# bazel_names.py, as measured.
PACKAGE_NAME = re.compile(r"[A-Za-z0-9/._@-]+")
MAX_NAMED = 5  # bad file names reported per suite (then a count)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def _package_tree(top: Path, subpackages: set[Path]) -> tuple[str, list[str]]:
    """What the suite BUILD's glob("**") walks in `top`: (why it cannot, or ""; every file and
    directory it reaches, relative to `top`). Like Bazel's glob it follows symlinks, skips
    __pycache__ and .pytest_cache, and stops at subpackages (a directory with a BUILD file, or in
    `subpackages`); a symlink back to an ancestor recurses until the path is too long, duplicating
    every file, or forever with two such links. Walks without recursion, at most MAX_GLOB_ENTRIES entries."""
    stack: list[tuple[str, tuple[str, ...]]] = [(str(top), (os.path.realpath(top),))]
    reached: list[str] = []
    while stack:
        path, ancestors = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name in ("__pycache__", ".pytest_cache"):
                continue
            relative = os.path.relpath(entry.path, top).replace(os.sep, "/")
            if entry.is_dir():  # follows symlinks, as glob does
                real = os.path.realpath(entry.path)
                if real in ancestors:  # Bazel refuses it even where the link leads to a package ("infinite symlink expansion")
                    return f"the symlink {relative!r} leads back to {os.path.relpath(real, top).replace(os.sep, '/')!r} above it (a loop); remove the link", reached
                if Path(real) in subpackages or any(os.path.isfile(os.path.join(entry.path, b)) for b in ("BUILD", "BUILD.bazel")):
                    continue
                stack.append((entry.path, ancestors + (real,)))
            reached.append(relative)
            if len(reached) > MAX_GLOB_ENTRIES:
                return f"more than {MAX_GLOB_ENTRIES} files and directories under it; keep the suite's directory smaller", reached
    return "", reached


def _check_package_files(top: Path, directory: str, subpackages: set[Path], at: tuple, problems: Problems) -> bool:
    """Every path Bazel's glob of the suite's package reaches must be one Bazel takes (bazel_names.py):
    one it refuses fails every target of the suite, or all of `bazel test //...`. False when the
    directory cannot be walked at all."""
    hazard, reached = _package_tree(top, subpackages)
    if hazard:
        problems.add(at, f"directory {directory!r} cannot be globbed by Bazel: {hazard}")
        return False
    bad = [(path, why) for path in reached if (why := bazel_names.package_file_problem(path))]
    for path, why in bad[:MAX_NAMED]:
        problems.add(at, f"{directory + '/' + path!r} {why}; rename it or move it out of the suite's directory")
    if len(bad) > MAX_NAMED:
        problems.add(at, f"{len(bad) - MAX_NAMED} more paths in {directory}/ that Bazel refuses (as above)")
    return not bad


def build(data: dict[str, Any], invalid_suites: set[str], display: str, workspace: Path, problems: Problems, packages_visible: bool = True) -> Matrix:
    devices = tuple(
        Device(name, tuple(d.get("tags", ())), tuple(sorted(d.get("env", {}).items())), bool(d.get("requires_gpu", False)),
               tuple(sorted(d.get("exec_properties", {}).items())))  # fmt: skip
        for name, d in data["devices"].items()
    )
    for device in devices:
        _check_env(device.env, ("devices", device.name, "env"), problems)
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
        subpackages = {(workspace / d).resolve() for d in every_directory if d != directory}
        if escaping or not _check_package_files(real, directory, subpackages, dir_at, problems):
            continue
        found = {key: _globs(workspace, directory, patterns[key]) for key in ("tests", "data")}
        for key, files in found.items():
            for file, i in files.items():
                where = at + (key, i) if key in s else at
                if key == "tests" and (why := bazel_names.test_file_problem(file[len(directory) + 1 :])):
                    problems.add(where, f"test file {file[len(directory) + 1 :]!r} {why}; rename it")
                _check_same_package(workspace, directory, file, every_directory, where, problems)
        tests = list(found["tests"])
        if not tests:
            problems.add(at + ("tests",) if "tests" in s else at, f"no test file matches {patterns['tests']} in {directory}/")
        for key, names, valid in (("variants", s["variants"], variant_names), ("devices", s["devices"], device_names)):
            for i, n in enumerate(names):
                if n not in valid:
                    problems.add(at + (key, i), f"unknown {key[:-1]} {n!r}: {did_you_mean(n, valid)}")
        plugin_problem = _plugin_problem(workspace, {*found["tests"], *found["data"]})
        for i, message in pytest_args.problems(s.get("pytest_args", []), plugin_problem):
            problems.add(at + ("pytest_args", i), f"suites.{name}.pytest_args.{i}: {message}")
        expectations_path = f"{directory}/{os.path.normpath(s['expectations_file'])}" if "expectations_file" in s else ""
        if expectations_path:
            _check_same_package(workspace, directory, expectations_path, every_directory, at + ("expectations_file",), problems)
            if expectations_path in found["tests"]:
                problems.add(at + ("expectations_file",), f"suites.{name}.expectations_file: {expectations_path} is one of the suite's test files")
        env = tuple(sorted((s.get("env") or {}).items()))
        _check_env(env, at + ("env",), problems)
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
                flaky_attempts=int(s.get("flaky_attempts", 1)),
                tags=tuple(s.get("tags", ())),
                default_device=bool(s.get("default_device", False)),
                shard_seconds=float(s["shard_seconds"]) if "shard_seconds" in s else None,
                recorded=recorded.recorded,
                durations_problem=recorded.problem,
                pytest_args=tuple(s.get("pytest_args", ())),
                granularity=s.get("granularity", "cell"),
                transform_check_off=(s.get("transform_check") or {}).get("disabled", ""),
                expectations_file=expectations_path,
                manual=_manual_files(s, tests, directory, at, problems),
                env=env,
            )
        )
    expected = _expectations(data.get("expectations") or {}, suites, data["suites"], problems)
    matrix = Matrix(display, devices, variants, tuple(suites), expected, history=data.get("history", ""), located=problems.doc)
    _check_unique_names(matrix, problems)
    _check_spec_sizes(matrix, problems)
    return matrix


def _check_spec_sizes(matrix: Matrix, problems: Problems) -> None:
    """Each target's spec travels as one environment string (defs.bzl), which Linux caps at 128 KiB:
    past it Bazel cannot even start the test. Its expectations are what grows; an expectations file
    keeps them out of the spec. Checked once the rest holds (a target needs its variant and device)."""
    if problems.lines:
        return
    for cell in matrix.cells():
        for target in cell.targets:
            size = target.spec().env_bytes()
            if size <= MAX_ENV_STRING:
                continue
            suite = cell.suite.name
            entries = len(target.expectations.xfail) + len(target.expectations.skip)
            at = ("expectations", suite, cell.variant.name) if entries else ("suites", suite)
            fix = (f"keep suite {suite}'s expectations in a file of its own (suites.{suite}.expectations_file, docs/matrix-yaml.md#expectations-at-scale)"
                   if entries else "split the suite's files into targets of their own (granularity: file)")  # fmt: skip
            problems.add(at, f"target {target.label}'s configuration ({entries} expectation entries) would be a {size}-byte environment string; "
                             f"Linux allows {MAX_ENV_STRING} bytes (MAX_ARG_STRLEN) and the test could not start: {fix}")  # fmt: skip
            break  # one line per cell


def _check_env(env: tuple[tuple[str, str], ...], at: tuple, problems: Problems) -> None:
    """A device's or suite's env: names Bazel and a shell take, values Bazel passes as written."""
    for key, value in env:
        if not ENV_NAME.fullmatch(key):
            problems.add(at + (key,), f"env name {key!r} is not a variable name: use letters, digits and _, not starting with a digit")
        if "$" in value:
            problems.add(at + (key,), f"env value {value!r} has a '$', which Bazel expands (make variables, $(location)); remove it")
        if key.startswith("PYTEST_") or key.startswith("MATRIX_"):
            problems.add(at + (key,), f"env {key}: pytest's and the runtime's own settings would change which tests run and how statuses are decided; "
                                      "the runtime decides them (use the suite's pytest_args)")  # fmt: skip


def _manual_files(s: dict[str, Any], tests: list[str], directory: str, at: tuple, problems: Problems) -> tuple[str, ...]:
    """The suite's test files (relative to its directory) whose targets are manual (suites.<s>.manual)."""
    patterns = s.get("manual") or []
    if patterns and s.get("granularity", "cell") != "file":
        problems.add(at + ("manual",), "manual names test files whose targets `bazel test //...` leaves out: it needs granularity: file (one target per test file)")
        return ()
    files = [t[len(directory) + 1 :] for t in tests]
    manual: dict[str, None] = {}
    for i, pattern in enumerate(patterns):
        hits = [f for f in files if fnmatchcase(f, pattern)]
        if not hits:
            problems.add(at + ("manual", i), f"manual pattern {pattern!r} matches no test file of the suite: {did_you_mean(pattern, files)}")
        manual.update(dict.fromkeys(hits))
    return tuple(sorted(manual))


def _variants(data: dict[str, Any], workspace: Path, suite_directories: set[str], problems: Problems, packages_visible: bool) -> tuple[Variant, ...]:
    """The variants, each with the Bazel library its cells depend on (variant_library.py)."""
    variants = []
    for name, v in data["variants"].items():
        module = v["impl"].partition(":")[0]
        resolved = variant_library.resolve(module, v.get("library"), workspace, suite_directories, packages_visible) if module else variant_library.Resolved()
        if resolved.problem:
            problems.add(("variants", name, resolved.problem_key), f"variants.{name}.{resolved.problem_key}: {resolved.problem}")
        check_off = (v.get("transform_check") or {}).get("disabled", "")
        variants.append(Variant(name, v["impl"], v["description"], tuple(v.get("applies_to", ())), resolved.label, resolved.generated, check_off,
                                int(v.get("flaky_attempts", 1))))  # fmt: skip
    return tuple(variants)


def _plugin_problem(workspace: Path, suite_files: set[str]) -> Callable[[str], str]:
    """For `-p module`: why the tests could not import it ("" when they can). A cell's process sees the
    Python environment and its own runfiles, of the workspace only the suite's files (tests:, data:)."""

    def problem(module: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module):
            return "not a module name"
        path = module.replace(".", "/")
        if f"{path}.py" in suite_files or f"{path}/__init__.py" in suite_files:
            return ""
        top = module.split(".")[0]
        spec = importlib.util.find_spec(top) if top not in sys.modules else sys.modules[top].__spec__  # finds, does not import
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is not None and not origin.is_relative_to(workspace.resolve()):
            return ""
        return "no such module in the Python environment or among the suite's files (tests:, data:), the only ones its tests can import"

    return problem


def _check_same_package(workspace: Path, directory: str, file: str, suite_directories: set[str], where: tuple, problems: Problems) -> None:
    """A file below another package (a directory with a BUILD file, or another suite's, whose BUILD
    file generate writes) is no file of this suite's package: Bazel refuses the label."""
    parts = file[len(directory) + 1 :].split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        below = "/".join([directory, *parts[:depth]])
        if below in suite_directories or any((workspace / below / build).is_file() for build in ("BUILD", "BUILD.bazel")):
            problems.add(where, f"file {file!r} is in package {below!r}, below the suite's package {directory!r}: Bazel cannot take it as a file of the suite; narrow the pattern or move the file")
            return


def _check_unique_names(matrix: Matrix, problems: Problems) -> None:
    """Every generated target name once per package: `<suite>_<variant>_<device>` collides when
    names contain `_` (variant base_b on cpu vs variant base on b_cpu)."""
    seen: dict[tuple[str, str], str] = {("", target_names.CHECK_TARGET): "the generated-files check", ("", target_names.ALL_CELLS): "the test suite of every cell"}
    for suite in matrix.suites:
        seen[suite.directory, target_names.SUITE_FILES] = f"the file group of suite {suite.name!r}"
    for suite in matrix.suites:  # not matrix.cells(): unknown variants and devices are reported elsewhere
        for variant in suite.variants:
            for index, device in enumerate(suite.devices):
                name = target_names.cell(suite.name, variant, device)
                key, what = (suite.directory, name), f"variant {variant!r} on device {device!r} of suite {suite.name!r}"
                if why := bazel_names.target_name_problem(name):
                    problems.add(("suites", suite.name, "devices", index), f"target name {name!r} of {what} {why}; shorten the names")
                if key in seen:
                    problems.add(("suites", suite.name, "devices", index), f"target name {name!r} of {what} is also the name of {seen[key]}; rename a variant or device")
                seen.setdefault(key, what)
    members = {"variant": matrix.variants, "device": matrix.devices, "suite": matrix.suites}
    for prefix in target_names.GROUPS:
        for name in (m.name for m in members[prefix]):
            key = ("", target_names.group(prefix, name))
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


def _expectations(raw: dict, suites: list[Suite], raw_suites: dict, problems: Problems) -> dict:
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
                for kind, entries in expectations.on_device(spec, device_name).items():
                    merged[kind] = tuple(sorted(entries.items()))
                    for node_id in entries:
                        where[kind, node_id] = vat + (("devices", device_name, kind, node_id) if node_id in specific.get(kind, {}) else (kind, node_id))
                        _check_node_id(suite, node_id, where[kind, node_id], problems)  # once: problems are deduplicated
                for node_id in sorted(set(dict(merged["xfail"])) & set(dict(merged["skip"]))):
                    later = max(where["xfail", node_id], where["skip", node_id], key=problems.where)
                    conflicts.setdefault(later, []).append(device_name)
                out[(suite_name, variant_name, device_name)] = Expectations(merged["xfail"], merged["skip"])
            for later, devices in conflicts.items():
                on = "" if len(devices) == len(suite.devices) else f" on device {', '.join(map(repr, devices))}"
                problems.add(later, f"{later[-1]!r} is both xfail and skip{on}; keep one")
    return out


def _check_node_id(suite: Suite, node_id: str, where: tuple, problems: Problems) -> None:
    test_file = f"{suite.directory}/{node_id.split('::', 1)[0]}"
    if test_file not in suite.test_files:
        choices = [f[len(suite.directory) + 1 :] for f in suite.test_files]
        problems.add(where, f"test file {node_id.split('::', 1)[0]!r} of {node_id!r} is not a test file of suite {suite.name!r}: {did_you_mean(node_id.split('::', 1)[0], choices)}")
