"""Which Bazel library provides each variant's code: a dependency of exactly that variant's cells,
so editing a variant reruns only its cells, and its code reaches the cell's runfiles, its cache key
and a remote worker.

- A built-in variant (`tools.matrix.variants.<module>`): `//tools/matrix:variants_<module>`.
- `library: //package:target` in matrix.yaml: the user's own py_library; the module must be a file
  of that package.
- Neither, and the module is in no Bazel package but the root (the README's plug-in recipe:
  `my_project/variants.py` beside matrix.yaml): generate writes the library into the root
  BUILD.bazel, named after the module's top directory (`//:my_project`, all of `my_project/**/*.py`).

Checked from files only (nothing imported, no Bazel query), when matrix.yaml is loaded.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

TOOL_ROOT = Path(__file__).absolute().parents[2]  # holds tools/matrix/variants
RUNTIME = "//tools/matrix:runtime"
BUILTIN_PREFIX = "tools.matrix.variants."
BUILTIN_DIR = "tools/matrix/variants"
BUILD_FILES = ("BUILD.bazel", "BUILD")
MAX_SCANNED_FILES = 1_000  # a plug-in directory's .py files read for their imports of built-in variants
LABEL = re.compile(r"//(?P<package>[A-Za-z0-9/._@-]*)(?::(?P<name>[A-Za-z0-9_./+=,@~-]+))?")


BUILTIN_LABEL_PREFIX = "//tools/matrix:variants_"


def builtin_label(module: str) -> str:
    """`tools.matrix.variants.export` -> `//tools/matrix:variants_export` (tools/matrix/BUILD.bazel)."""
    return BUILTIN_LABEL_PREFIX + module[len(BUILTIN_PREFIX) :]


@dataclass(frozen=True)
class GeneratedLibrary:
    """A py_library generate writes into the root BUILD.bazel for a plug-in variant."""

    name: str
    srcs: str  # a glob pattern of the plug-in's directory, or its one file
    deps: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"//:{self.name}"


@dataclass(frozen=True)
class Resolved:
    label: str = ""  # empty when the module is not found (impl_check reports that at generate)
    generated: GeneratedLibrary | None = None
    problem: str = ""
    problem_key: str = "impl"  # the matrix.yaml key the problem points at: impl or library


def module_file(module: str, workspace: Path) -> str | None:
    """The workspace-relative file of a dotted module (`a/b.py` or `a/b/__init__.py`), if present."""
    parts = module.split(".")
    for candidate in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
        if (workspace / candidate).is_file():  # not resolved: under Bazel the files are symlinks into the source tree
            return candidate
    return None


def find_module(module: str, workspace: Path) -> Path | None:
    """The module's file in the workspace, else in the tool's own tree (where the built-in variants
    live when the tools are used from another workspace)."""
    for root in dict.fromkeys((workspace, TOOL_ROOT)):
        file = module_file(module, root)
        if file is not None:
            return root / file
    return None


def owning_package(file: str, workspace: Path, generated_packages: set[str]) -> str:
    """The Bazel package of a workspace-relative file: its nearest directory with a BUILD file (or
    one generate writes), "" for the root."""
    parts = file.split("/")[:-1]
    for depth in range(len(parts), 0, -1):
        directory = "/".join(parts[:depth])
        if directory in generated_packages or any((workspace / directory / b).is_file() for b in BUILD_FILES):
            return directory
    return ""


def resolve(module: str, library: str | None, workspace: Path, generated_packages: set[str], packages_visible: bool = True) -> Resolved:
    """The library of a variant whose impl is in `module`; `library` is matrix.yaml's key, if given.
    `generated_packages` are the suite directories (their BUILD.bazel is generate's). Without
    `packages_visible` a declared library is not checked against the BUILD files (see config.load)."""
    if library is not None:
        if not packages_visible and (match := LABEL.fullmatch(library)):
            return Resolved(_normal_label(match))
        return _declared(module, library, workspace, generated_packages)
    if _is_builtin(module, workspace):
        return Resolved(builtin_label(module))
    file = module_file(module, workspace)
    if file is None:
        return Resolved()  # impl_check says the module is missing
    package = owning_package(file, workspace, generated_packages)
    if package in generated_packages:
        return Resolved(problem=f"module {file} is in suite directory {package}, whose BUILD.bazel generate writes: move the module out of it")
    if package:
        return Resolved(problem=f"module {file} is in Bazel package //{package}: name the py_library that provides it, "
                                f"`library: //{package}:<target>`, or move the module out of that package")  # fmt: skip
    top = file.split("/")[0]
    if "/" in file:
        generated = GeneratedLibrary(top, f"{top}/**/*.py", _deps(_python_files(workspace / top), workspace))
    else:
        generated = GeneratedLibrary(file[: -len(".py")], file, _deps([workspace / file], workspace))
    return Resolved(generated.label, generated)


def _declared(module: str, library: str, workspace: Path, generated_packages: set[str]) -> Resolved:
    def problem(message: str) -> Resolved:
        return Resolved(problem=message, problem_key="library")

    match = LABEL.fullmatch(library)
    if match is None:
        return problem(f"{library!r} is not a label of this workspace: use //package:target")
    package, label = match["package"].rstrip("/"), _normal_label(match)
    if not package:
        return problem(f"{library!r} is in the root package, whose BUILD.bazel generate writes: leave `library` out to have "
                       "generate write the library, or put yours in a package of its own")  # fmt: skip
    if package in generated_packages:
        return problem(f"{library!r} is in a suite's package, whose BUILD.bazel generate writes: put the library in a package of its own")
    if not any((workspace / package / b).is_file() for b in BUILD_FILES):
        return problem(f"{library!r}: there is no package //{package} (no {package}/BUILD.bazel or {package}/BUILD)")
    file = module_file(module, workspace)
    if file is None:
        return Resolved(label)  # impl_check says the module is missing
    owner = owning_package(file, workspace, generated_packages)
    if owner != package:
        return problem(f"{library!r} cannot provide {module!r}: its file {file} is in package //{owner}, not //{package}")
    return Resolved(label)


def _is_builtin(module: str, workspace: Path) -> bool:
    """`tools.matrix.variants.<m>` with a file <m>.py (not the Variant API, not a missing module)."""
    name = module[len(BUILTIN_PREFIX) :]
    return module.startswith(BUILTIN_PREFIX) and "." not in name and any((root / BUILTIN_DIR / f"{name}.py").is_file() for root in (workspace, TOOL_ROOT))


def _normal_label(match: re.Match[str]) -> str:
    """`//a/b` -> `//a/b:b`, as Bazel reads it."""
    package = match["package"].rstrip("/")
    return f"//{package}:{match['name'] or package.rsplit('/', 1)[-1]}"


def _python_files(top: Path) -> list[Path]:
    """The .py files under `top` (symlinked directories not followed), at most MAX_SCANNED_FILES."""
    found: list[Path] = []
    for directory, _dirs, files in os.walk(top):
        found += [Path(directory, f) for f in sorted(files) if f.endswith(".py")]
        if len(found) >= MAX_SCANNED_FILES:
            break
    return found[:MAX_SCANNED_FILES]


def _deps(files: list[Path], workspace: Path) -> tuple[str, ...]:
    """The runtime, plus the built-in variant libraries the plug-in imports (a subclass of Retrace)."""
    found = {RUNTIME}
    for path in files:
        try:
            tree = ast.parse(path.read_bytes(), str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # impl_check reports an unreadable impl module; other files are the user's
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                parts = name.split(".")
                # `from tools.matrix.variants import Call` names no module: only existing files count
                if name.startswith(BUILTIN_PREFIX) and _is_builtin(".".join(parts[:4]), workspace):
                    found.add(builtin_label(".".join(parts[:4])))
    return tuple(sorted(found))
