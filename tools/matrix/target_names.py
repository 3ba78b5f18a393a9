"""The names of the Bazel targets generate writes: the one place each naming rule is written out
(config/ plans with them, generate.py writes them, the report and rerun select by them)."""

from __future__ import annotations

CHECK_TARGET = "generated_files_test"  # root package: fails `bazel test //...` when a generated file is stale
SUITE_FILES = "suite_files"  # each suite's package: every file of the suite, for that check
GROUPS = ("variant", "device", "suite")  # root test_suites: //:variant_<v>, //:device_<d>, //:suite_<s>
ALL_CELLS = "all_cells"  # root test_suite of every cell: what `report` runs (the tools' own tests are not cells)


def cell(suite: str, variant: str, device: str) -> str:
    """A cell's py_test, or its test_suite when it runs as one target per file."""
    return f"{suite}_{variant}_{device}"


def file_target(cell_name: str, test_file: str) -> str:
    """The py_test of one test file of a cell (granularity: file): `<cell>/<file without .py>`."""
    return f"{cell_name}/{test_file[: -len('.py')] if test_file.endswith('.py') else test_file}"


def expectations_part(cell_name: str, test_file: str) -> str:
    """The split rule's output for one test file: the cell's entries naming that file (package-relative)."""
    return f"{cell_name}.expectations/{test_file}.json"


def group(kind: str, name: str) -> str:
    """The root test_suite of every cell of one variant, device or suite (`kind` in GROUPS)."""
    return f"{kind}_{name}"
