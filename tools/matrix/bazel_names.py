"""Which names Bazel 4.2.3 takes end to end, as measured (not the documented label set): a suite's
files, the targets named after its test files, and the paths Bazel walks in a suite's package.

Measured with Debian's bazel-bootstrap 4.2.3 by building py_tests whose name, data and environment
held each character (tools/matrix/drill/input_drill.py runs the accepted ones through real Bazel):
- Every file of a suite's package is a label (the suite's BUILD globs "**" for the generated-files
  check): a non-printable character, ':' or '\\' makes the glob fail, so no target of the package loads.
- Bazel's runfiles refuse a path with a space (build-runfiles: "link or target filename contains
  space"): every target with that file in its runfiles fails to build, the generated-files check
  among them, so `bazel test //...` builds nothing.
- A target's name is also a file name Bazel writes (<name>.runfiles_manifest): its last path segment
  may be at most 237 bytes. A target name with a non-ASCII character is refused by the sandbox
  (NO STATUS), one with "'" breaks the Python launcher Bazel writes (SyntaxError).
- Test file names become target names (granularity: file) and parts of --test_filter, whose patterns
  are separated by ',' (a file name holding one cannot be selected); pytest refuses a test file path
  with '[' (it reads it as a parametrization).
Everything else of printable ASCII works, given that no name travels through a target's `args`
(Bazel splits those like a shell): runtime/cell_config.py's spec travels in the environment.
"""

from __future__ import annotations

MAX_TARGET_SEGMENT = 237  # bytes: Bazel appends ".runfiles_manifest" (18) within the 255 a file name may have


def package_file_problem(path: str) -> str:
    """Why Bazel cannot take `path` (relative to its package) as a file of the package ("" when it can)."""
    bad = next((c for c in path if not c.isprintable() and c != " "), None)
    if bad is not None:
        return f"has the non-printable character {bad!r}: Bazel refuses it in a label, and the suite's whole package fails to load"
    for c in ":\\":
        if c in path:
            return f"has {c!r}, which Bazel refuses in a label: the suite's whole package fails to load"
    if " " in path:
        return "has a space, which Bazel's runfiles refuse: every target that has it as data fails to build (the generated-files check among them)"
    return ""


def target_name_problem(name: str) -> str:
    """Why a py_test cannot be named `name` ("" when it can)."""
    bad = next((c for c in name if not c.isascii()), None)
    if bad is not None:
        return f"has the non-ASCII character {bad!r}: Bazel's sandbox cannot start a test whose name has it"
    if "'" in name:
        return "has \"'\": the Python launcher Bazel writes for a py_test of that name does not start (SyntaxError)"
    last = name.rsplit("/", 1)[-1]
    if len(last.encode()) > MAX_TARGET_SEGMENT:
        return f"is {len(last.encode())} bytes long after its last '/': Bazel writes <name>.runfiles_manifest, so at most {MAX_TARGET_SEGMENT} fit a file name"
    return ""


def test_file_problem(path: str) -> str:
    """Why `path` (relative to its suite) cannot be a test file ("" when it can): a file of the package,
    a target named after it (granularity: file), selectable by --test_filter."""
    problem = package_file_problem(path)
    if problem:
        return problem
    problem = target_name_problem(path[: -len(".py")] if path.endswith(".py") else path)
    if problem:
        return f"would name a target (granularity: file) that {problem}"
    if "," in path:
        return "has ',', which separates --test_filter patterns: its tests could not be selected or rerun"
    if "[" in path:
        return "has '[', which pytest refuses in the path of a test file it is given (\"path cannot contain [] parametrization\")"
    return ""
