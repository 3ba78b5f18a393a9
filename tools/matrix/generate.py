"""Write each suite's BUILD.bazel and the root BUILD.bazel from the Matrix.

Output is deterministic (sorted, no timestamps): byte-identical across runs and machines.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from tools.matrix import durations, impl_check, target_names, variant_library
from tools.matrix.config import Cell, Matrix, MatrixError, relative
from tools.matrix.errors import UserError

REGENERATE = "bazel run //tools:matrix -- generate"
HEADER = (
    f"# GENERATED FILE from matrix.yaml by `{REGENERATE}` -- do not edit: hand edits are overwritten.\n"
    f"# Regenerate with `{REGENERATE}`; `{REGENERATE} --check` (also run by `bazel test //...`) fails when stale.\n"
)


FLAKY_ATTEMPTS_RC = "flaky_attempts.bazelrc"  # generated, imported by .bazelrc (try-import)
GPU_CONSTRAINT = "//tools/bazel:gpu"  # the constraint of the `--config=gpu` platform (tools/bazel/BUILD.bazel)


def _s(value: str) -> str:
    """A Starlark string literal."""
    if value.isprintable():  # the common case, without json's overhead
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return json.dumps(value, ensure_ascii=False)


def _value(value: Any, indent: str = "    ") -> str:
    """A Starlark literal of a JSON-like value (dict keys sorted, one item per line)."""
    if isinstance(value, str):
        return _s(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, dict):
        items = sorted(value.items())
        if not items:
            return "{}"
        return "{\n" + "".join(f"{indent}    {_s(k)}: {_value(v, indent + '    ')},\n" for k, v in items) + f"{indent}}}"
    values = list(value)
    if not values:
        return "[]"
    if len(values) == 1:
        return f"[{_value(values[0], indent)}]"
    return "[\n" + "".join(f"{indent}    {_value(v, indent + '    ')},\n" for v in values) + f"{indent}]"


def _list(values: list[str] | tuple[str, ...], indent: str = "    ") -> str:
    return _value(tuple(values), indent)


# The spec fields every target of a cell shares (written once per cell); the rest are per target.
_PER_TARGET = ("target", "test_files", "xfail", "skip", "durations_file", "expectations")


def cell_rule(cell: Cell) -> str:
    """One matrix_cell call: the cell's shared spec fields, each target's own, and Bazel's attributes."""
    specs = {t.name: t.spec().written_fields() for t in cell.targets}
    shared = {k: v for k, v in next(iter(specs.values())).items() if k not in _PER_TARGET}
    targets = {name: {k: v for k, v in spec.items() if k in _PER_TARGET} for name, spec in specs.items()}
    lines = [
        "matrix_cell(",
        f"    name = {_s(cell.target_name)},",
        f"    library = {_s(cell.variant.library)},",
        f"    spec = {_value(shared)},",
        f"    targets = {_value(targets)},",
    ]
    manual = [t.name for t in cell.targets if t.manual and "manual" not in cell.tags]
    if manual:
        lines.append(f"    manual = {_list(manual)},")
    if cell.suite.expectations_file:
        lines.append(f"    expectations = {_s(relative((cell.suite.expectations_file,), cell.suite.directory)[0])},")
    if cell.suite.data_files:
        lines.append(f"    data = {_list(relative(cell.suite.data_files, cell.suite.directory))},")
    if any(t.spec().durations_file for t in cell.targets):
        lines.append(f"    durations = {_s(durations.FILE_NAME)},")
    sharded = {t.name: t.shard_count for t in cell.targets if t.shard_count > 1}
    if sharded:
        lines.append(f"    shard_counts = {_value(sharded)},")
    lines.append(f"    size = {_s(cell.suite.size)},")
    env = {**dict(cell.suite.env), **dict(cell.device.env)}
    if env:
        lines.append(f"    env = {_value(env)},")
    if cell.device.exec_properties:
        lines.append(f"    exec_properties = {_value(dict(cell.device.exec_properties))},")
    if cell.device.requires_gpu:  # skipped by `bazel test //...` unless --config=gpu selects a platform with a GPU
        lines.append(f"    target_compatible_with = [{_s(GPU_CONSTRAINT)}],")
    lines.append(f"    tags = {_list(cell.tags)},")
    lines.append(")")
    return "\n".join(lines) + "\n"


def suite_build(matrix: Matrix, suite_name: str, cells: list[Cell] | None = None) -> str:
    cells = [c for c in matrix.cells() if c.suite.name == suite_name] if cells is None else cells
    parts = [
        HEADER,
        'load("//tools/matrix:defs.bzl", "matrix_cell")\n',
        'package(default_visibility = ["//visibility:public"])\n',
        "# Every file of the suite, for the generated-files check at the root.\n"
        f'filegroup(\n    name = "{target_names.SUITE_FILES}",\n    srcs = glob(["**"], exclude = ["**/__pycache__/**", "**/.pytest_cache/**"]),\n)\n',
        *(cell_rule(c) for c in cells),
    ]
    return "\n".join(parts)


def _group_members(cells: list[Cell]) -> tuple[list[str], bool]:
    """(labels, manual) of a root test_suite of `cells`. Bazel expands a test_suite `//...` reaches
    into every test it lists, a `manual` one too (a `-manual` tag filter does not reach into a listed
    test_suite): so a group lists each cell's label only when none of its targets is manual, else the
    cell's other targets; a group of nothing but manual cells lists them and is manual itself."""
    labels = []
    for cell in cells:
        if not any(t.manual for t in cell.targets):
            labels.append(cell.label)
        else:
            labels += [t.label for t in cell.targets if not t.manual]
    if labels or not cells:
        return labels, False
    return [c.label for c in cells], True


def root_build(matrix: Matrix) -> str:
    groups: dict[str, list[Cell]] = defaultdict(list)  # root test_suite name -> its cells
    for cell in matrix.cells():
        for kind, member in zip(target_names.GROUPS, (cell.variant, cell.device, cell.suite)):
            groups[target_names.group(kind, member.name)].append(cell)
    suite_files = [f"//{s.directory}:{target_names.SUITE_FILES}" for s in matrix.suites]
    generated = {v.generated_library.name: v.generated_library for v in matrix.variants if v.generated_library}
    declared = sorted({v.library for v in matrix.variants if v.library and not v.generated_library and not v.library.startswith(variant_library.BUILTIN_LABEL_PREFIX)})
    parts = [
        HEADER,
        'load("//tools/matrix:defs.bzl", "matrix_generated_files_test")\n',
        f'exports_files(["matrix.yaml", "requirements.txt", "BUILD.bazel", "{FLAKY_ATTEMPTS_RC}"])\n',
        "# Fails `bazel test //...` when a generated BUILD file is stale.\n"
        "matrix_generated_files_test(\n"
        f'    name = "{target_names.CHECK_TARGET}",\n'
        f"    data = {_list(['BUILD.bazel', FLAKY_ATTEMPTS_RC, 'matrix.yaml', *sorted(suite_files), *(f':{n}' for n in sorted(generated)), *declared])},\n"
        ")\n",
    ]
    for name, library in sorted(generated.items()):
        users = ", ".join(sorted(v.name for v in matrix.variants if v.generated_library == library))
        parts.append(
            f"# The code of plug-in variant(s) {users} (matrix.yaml): a dependency of exactly their cells.\n"
            f"py_library(\n    name = {_s(name)},\n"
            + (f"    srcs = glob([{_s(library.srcs)}]),\n" if "*" in library.srcs else f"    srcs = [{_s(library.srcs)}],\n")
            + f"    deps = {_list(library.deps)},\n"
            + '    visibility = ["//visibility:public"],  # the cells are in the suites\' packages\n)\n'
        )
    parts.append(
        "# Every cell of the matrix: what `bazel run //tools:matrix -- report` runs (not the tools' own tests);\n"
        "# manual, so that `bazel test //...` does not run the cells it leaves out through it.\n"
        f"test_suite(\n    name = {_s(target_names.ALL_CELLS)},\n    tests = {_list(sorted(c.label for c in matrix.cells()))},\n    tags = [\"manual\"],\n)\n"
    )
    for name in sorted(groups, key=lambda n: (target_names.GROUPS.index(n.split("_", 1)[0]), n)):
        labels, manual = _group_members(groups[name])
        tags = '    tags = ["manual"],\n' if manual else ""
        parts.append(f"test_suite(\n    name = {_s(name)},\n    tests = {_list(sorted(labels))},\n{tags})\n")
    return "\n".join(parts)


def render(matrix: Matrix) -> dict[str, str]:
    """Workspace-relative path -> file content, for every generated file."""
    files = {"BUILD.bazel": root_build(matrix)}
    by_suite: dict[str, list[Cell]] = defaultdict(list)
    for cell in matrix.cells():
        by_suite[cell.suite.name].append(cell)
    for suite in matrix.suites:
        files[f"{suite.directory}/BUILD.bazel"] = suite_build(matrix, suite.name, by_suite[suite.name])
    files[FLAKY_ATTEMPTS_RC] = flaky_attempts_rc(matrix)
    return files


def flaky_attempts_rc(matrix: Matrix) -> str:
    """Bazel's attempts per cell (matrix.yaml flaky_attempts): Bazel takes them only from its command
    line or an rc file (a py_test's `flaky` attribute means 3), one regex per cell's targets."""
    lines = [HEADER.rstrip("\n"), "# Each cell's targets get the attempts of its suite's or variant's flaky_attempts (the larger)."]
    for cell in matrix.cells():
        if cell.flaky_attempts > 1:
            lines.append(f"test --flaky_test_attempts=^{re.escape(cell.label)}(/.*)?$@{cell.flaky_attempts}")
    return "\n".join(lines) + "\n"


def _outside(matrix: Matrix, workspace: Path, files: dict[str, str]) -> list[str]:
    """A problem for each file to write whose real path is not inside the workspace (a symlinked
    BUILD.bazel or directory): generate writes inside the workspace only."""
    root = workspace.resolve()
    by_directory = {s.directory: s.name for s in matrix.suites}
    found = []
    for path in files:
        real = (workspace / path).resolve()
        if not real.is_relative_to(root):
            suite = by_directory.get(path.rpartition("/")[0])
            at = ("suites", suite, "directory") if suite else ()
            found.append(matrix.at(at, f"{path} resolves to {str(real)!r}, outside the workspace; generate writes only inside it: replace the symlink with a real file"))
    return found


def _refuse(matrix: Matrix, workspace: Path, files: dict[str, str], writing: bool) -> None:
    """Raise MatrixError (nothing written yet) for what loading matrix.yaml could not check."""
    problems = impl_check.problems(matrix, workspace) + (_outside(matrix, workspace, files) if writing else [])
    if problems:
        raise MatrixError(problems)


def write(matrix: Matrix, workspace: Path) -> list[str]:
    """Write the files whose content changed; return their paths. Checks everything first, so a
    refused matrix writes nothing."""
    files = render(matrix)
    _refuse(matrix, workspace, files, writing=True)
    changed = []
    for path, text in files.items():
        target = workspace / path
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            changed.append(path)
    return changed


def require_current(matrix: Matrix, workspace: Path, command: str) -> None:
    """Refuse to run Bazel on generated files older than matrix.yaml: Bazel would run the cells as they
    were (an xfail entry removed by hand still xfails there), and the report would read them as today's."""
    stale = [path for path, text in render(matrix).items() if not (workspace / path).exists() or (workspace / path).read_text() != text]
    if stale:
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise UserError(f"{command}: the generated BUILD files are stale (matrix.yaml or its suites changed since `generate`): {shown}; "
                        f"run `{REGENERATE}` (make generate) first, then run it again")  # fmt: skip


def check(matrix: Matrix, workspace: Path) -> str:
    """A unified diff of stale generated files (empty when all are current)."""
    _refuse(matrix, workspace, render(matrix), writing=False)
    diffs = []
    for path, text in render(matrix).items():
        target = workspace / path
        current = target.read_text() if target.exists() else ""
        if current != text:
            diffs += difflib.unified_diff(current.splitlines(True), text.splitlines(True), f"a/{path}", f"b/{path} (generated)")
    return "".join(diffs)
