"""`xfail import`: a suite's expected-failure markers (PyTorch-style decorator attributes, pytest
marks, unittest.expectedFailure) become xfails of one variant, found by real `pytest --collect-only`
on the fixture suite fixtures/import_markers/ and written by the real CLI through the validated writer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.matrix import config, matrix_writer
from tools.matrix.records import Record
from tools.matrix.tests.fixtures.toolws import run_cli, write_compat

FIXTURE = Path(__file__).absolute().parent / "fixtures" / "import_markers"
MATRIX = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base: {impl: tools.matrix.variants.base:Base, description: plain}
  cpp_serdes: {impl: tools.matrix.variants.export:CppSerdes, description: round trip through C++}
suites:
  m:
    data: [markers.py]
    variants: [base, cpp_serdes]
    devices: [cpu, cuda]

expectations:
  m:
    cpp_serdes:
      # Listed by hand before the import: left as they are.
      xfail:
        test_pytest_style.py::test_plain: known
      skip:
        test_unittest_style.py::TestInherited: too slow  # minutes
# end
"""
U, P = "test_unittest_style.py", "test_pytest_style.py"
IMPORTED = (
    f"        {P}::test_every_param: 'imported: @expectedFailureCppSerDes ({P}:17)'\n"
    f"        {U}::TestExport::test_both_break: 'imported: @markers.expectedFailureCppSerDes ({U}:15)'\n"
    f"        {U}::TestExport::test_serdes_breaks: 'imported: @expectedFailureCppSerDes ({U}:10)'\n"
    f"        {U}::TestWholeClass::test_one: 'imported: @expectedFailureCppSerDes ({U}:31)'\n"
    f"        {U}::TestWholeClass::test_two: 'imported: @expectedFailureCppSerDes ({U}:31)'\n"
)
ANCHOR = "        test_pytest_style.py::test_plain: known\n"


def workspace(root: Path, matrix: str, suite: Path) -> Path:
    """Suite `m`, a copy of the fixture directory `suite`, and `matrix`."""
    # Not Bazel's runfiles __init__.py: the suite is a plain directory, as in a workspace.
    shutil.copytree(suite, root / "m", ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    (root / "matrix.yaml").write_text(matrix)
    return root


@pytest.fixture
def ws(tmp_path) -> Path:
    return workspace(tmp_path, MATRIX, FIXTURE)


def test_import_decorator_attribute_writes_the_variants_xfails(ws):
    argv = ("xfail", "import", "--suite", "m", "--variant", "cpp_serdes", "--marker", "_expected_failure_cpp_serdes")
    expected = MATRIX.replace(ANCHOR, ANCHOR + IMPORTED)
    dry = run_cli(ws, *argv, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    # 9 marked: the parametrized pair becomes one entry; TestInherited's two are skipped already, test_plain listed.
    assert dry.stdout == "9 of 17 test(s) in m carry _expected_failure_cpp_serdes; 3 already listed for cpp_serdes\n" + matrix_writer.diff(
        MATRIX, expected, "matrix.yaml"
    )
    assert (ws / "matrix.yaml").read_text() == MATRIX and not (ws / "m" / "BUILD.bazel").exists()

    done = run_cli(ws, *argv)
    assert done.returncode == 0, done.stderr
    assert (ws / "matrix.yaml").read_text() == expected  # comments, order and the hand-written entries kept
    cells = {c.target_name: c for c in config.load(ws / "matrix.yaml", ws).cells()}
    assert len(cells["m_cpp_serdes_cpu"].expectations.xfail) == len(cells["m_cpp_serdes_cuda"].expectations.xfail) == 6
    assert cells["m_base_cpu"].expectations.xfail == ()
    assert f'"{U}::TestWholeClass::test_two": "imported: @expectedFailureCppSerDes ({U}:31)"' in (ws / "m" / "BUILD.bazel").read_text()
    again = run_cli(ws, *argv)
    assert (again.returncode, again.stdout) == (0, "9 of 17 test(s) in m carry _expected_failure_cpp_serdes; 9 already listed for cpp_serdes\nnothing to import\n")


@pytest.mark.parametrize(
    ("marker", "entries"),
    [
        (
            "cpp_serdes_broken",  # a pytest mark, on a function and on one parametrization only
            [
                f"        {P}::test_marked: 'imported: @pytest.mark.cpp_serdes_broken ({P}:12)'\n",
                f"        {P}::test_one_param[2]: 'imported: @pytest.mark.cpp_serdes_broken ({P}:23)'\n",
            ],
        ),
        ("unittest.expectedFailure", [f"        {U}::TestExport::test_known_bad: 'imported: @unittest.expectedFailure ({U}:22)'\n"]),
    ],
)
def test_import_pytest_marks_and_unittest_expected_failure(ws, marker, entries):
    out = run_cli(ws, "xfail", "import", "--suite", "m", "--variant", "cpp_serdes", "--marker", marker)
    assert out.returncode == 0, out.stderr
    assert (ws / "matrix.yaml").read_text() == MATRIX.replace(ANCHOR, ANCHOR + "".join(entries))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--suite", "m", "--variant", "cpp_serdes", "--marker", "_expected_failure_cpp_serde"],
            "error: --marker _expected_failure_cpp_serde: none of the 17 test(s) collected in suite 'm' carries it; did you mean "
            "'_expected_failure_cpp_serdes'? markers seen: __unittest_expecting_failure__, _expected_failure_cpp_serdes, "
            "_expected_failure_retrace, cpp_serdes_broken, parametrize",
        ),
        (["--suite", "mm", "--variant", "base", "--marker", "x"], "error: --suite mm: no such suite in matrix.yaml; did you mean 'm'? valid: m"),
        (
            ["--suite", "m", "--variant", "cpp_serde", "--marker", "x"],
            "error: --variant cpp_serde: suite 'm' does not run it; did you mean 'cpp_serdes'? valid: base, cpp_serdes",
        ),
    ],
)
def test_import_refuses_what_names_nothing(ws, argv, expected):
    out = run_cli(ws, "xfail", "import", *argv)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", expected + "\n")
    assert (ws / "matrix.yaml").read_text() == MATRIX


def test_import_refuses_a_suite_that_fails_to_collect(ws):
    (ws / "m" / "test_broken.py").write_text("import no_such_module_anywhere\n")
    out = run_cli(ws, "xfail", "import", "--suite", "m", "--variant", "cpp_serdes", "--marker", "_expected_failure_cpp_serdes")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "error: suite 'm' has files that fail to collect, so their markers are unknown; nothing written:",
        "  test_broken.py: E   ModuleNotFoundError: No module named 'no_such_module_anywhere'",
    ]
    assert (ws / "matrix.yaml").read_text() == MATRIX


def test_import_collects_with_the_suites_pytest_args(ws):
    """The suite is collected as the runtime collects it: here its pytest_args turn an import-time
    DeprecationWarning into an error, so that file cannot be collected and nothing is imported."""
    (ws / "m" / "test_warns.py").write_text("import warnings\n\nwarnings.warn('old API', DeprecationWarning)\n\n\ndef test_w():\n    pass\n")
    (ws / "matrix.yaml").write_text(MATRIX.replace("    data: [markers.py]\n", '    data: [markers.py]\n    pytest_args: ["-W", "error::DeprecationWarning"]\n'))
    out = run_cli(ws, "xfail", "import", "--suite", "m", "--variant", "cpp_serdes", "--marker", "_expected_failure_cpp_serdes")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "error: suite 'm' has files that fail to collect, so their markers are unknown; nothing written:",
        "  test_warns.py: E   DeprecationWarning: old API",
    ]


def test_import_refuses_a_suite_whose_collection_segfaults(ws):
    """A real segfault at import (ctypes): the child dies, the error names the signal and shows the
    crash's first lines, which name the file; nothing written."""
    (ws / "m" / "test_segv.py").write_text("import ctypes\n\nctypes.string_at(0)\n")
    out = run_cli(ws, "xfail", "import", "--suite", "m", "--variant", "cpp_serdes", "--marker", "_expected_failure_cpp_serdes")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert lines[:2] == ["error: collecting suite 'm' failed (pytest died of SIGSEGV); nothing written:", "Fatal Python error: Segmentation fault"]
    assert any(line.strip().startswith('File "') and 'test_segv.py", line 3 in <module>' in line for line in lines)
    assert (ws / "matrix.yaml").read_text() == MATRIX


# --- method sources as PyTorch's files hold them -------------------------------------------------

PYTORCH_STYLE = Path(__file__).absolute().parent / "fixtures" / "import_pytorch"
INLINE = "test_inline_style.py"
MATRIX_T = MATRIX.replace("    data: [markers.py]\n", "    data: [markers.py, testing.py]\n").split("expectations:")[0] + "# end\n"


@pytest.fixture
def ws_pytorch(tmp_path) -> Path:
    root = workspace(tmp_path, MATRIX_T, PYTORCH_STYLE)
    shutil.copy(FIXTURE / "markers.py", root / "m")  # the decorators its testing.py re-exports
    return root


def test_import_names_the_decorator_and_its_line_in_pytorch_style_sources(ws_pytorch):
    """Bodies whose strings start in column 0 (assertExpectedInline) cannot be dedented and parsed
    alone: the decorator is found in the whole file, by the definition's line. Stacked decorators
    (the marker second or third, after a multi-line or continued one), a comment after it, a dotted
    name, a factory's nested function, a lambda wrapped by the marker, a class decorated inside an
    `if` block: each entry names the marker's own decorator and the line it is on."""
    out = run_cli(ws_pytorch, "xfail", "import", "--suite", "m", "--variant", "cpp_serdes", "--marker", "_expected_failure_cpp_serdes")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "6 of 7 test(s) in m carry _expected_failure_cpp_serdes; 0 already listed for cpp_serdes"
    imported = [line for line in (ws_pytorch / "matrix.yaml").read_text().splitlines(keepends=True) if "imported: " in line]
    assert "".join(imported) == (
        f"        {INLINE}::TestGenerated::test_made_by_a_factory: 'imported: @expectedFailureCppSerDes ({INLINE}:54)'\n"
        f"        {INLINE}::TestInline::test_continuation_and_comment: 'imported: @testing.expectedFailureCppSerDes ({INLINE}:28)'\n"
        f"        {INLINE}::TestInline::test_inline_graph: 'imported: @expectedFailureCppSerDes ({INLINE}:17)'\n"
        f"        {INLINE}::TestInline::test_lambda: 'imported: expectedFailureCppSerDes(...) ({INLINE}:45)'\n"
        f"        {INLINE}::TestInline::test_multiline_decorator_before: 'imported: @expectedFailureCppSerDes ({INLINE}:41)'\n"
        f"        {INLINE}::TestWholeClass::test_one: 'imported: @expectedFailureCppSerDes ({INLINE}:71)'\n"
    )


# --- entries whose test fails under base too ---------------------------------------------------

IMPORT_CPP = ("xfail", "import", "--suite", "m", "--variant", "cpp_serdes", "--marker", "_expected_failure_cpp_serdes")


def _record(test: str, variant: str, status: str, message: str = "", device: str = "cpu", suite: str = "m") -> Record:
    return Record(suite, test, variant, device, status, message=message, error_type=message.partition(":")[0] or None)


def test_import_warns_about_entries_whose_test_fails_under_base_too(ws):
    """From the last report: a test failing (or xfailed) under base is the suite's failure, which the
    variant's xfail would hide: a warning per entry, imported all the same. No warning where base
    passes, where the variant's own record fails differently, or for another suite's test."""
    write_compat(ws / "reports" / "compat.json", [
        _record(f"{P}::test_every_param[2]", "base", "failed", "AssertionError: assert 2 == 3"),
        _record(f"{U}::TestExport::test_serdes_breaks", "base", "xfailed", "AssertionError: known", device="cuda"),
        _record(f"{U}::TestExport::test_both_break", "base", "passed"),
        _record(f"{U}::TestWholeClass::test_one", "base", "failed", "RuntimeError: flaky fixture"),
        _record(f"{U}::TestWholeClass::test_one", "cpp_serdes", "failed", "VariantTransformError: variant 'cpp_serdes' failed"),
        _record(f"{U}::TestWholeClass::test_two", "base", "failed", "AssertionError: 1 != 2"),
        _record(f"{U}::TestWholeClass::test_two", "cpp_serdes", "failed", "AssertionError: 1 != 2"),
        _record(f"{U}::TestExport::test_both_break", "base", "failed", "AssertionError: other suite", suite="other"),
    ])  # fmt: skip
    out = run_cli(ws, *IMPORT_CPP)
    assert out.returncode == 0, out.stderr
    report = ws / "reports" / "compat.json"
    tail = "that failure is the suite's, not cpp_serdes's, and this xfail would hide it; imported as marked"
    assert out.stderr.splitlines() == [
        f"warning: {P}::test_every_param: fails under base too in {report} ({P}::test_every_param[2] on cpu: failed: AssertionError: assert 2 == 3): {tail}",
        f"warning: {U}::TestExport::test_serdes_breaks: fails under base too in {report} ({U}::TestExport::test_serdes_breaks on cuda: xfailed: AssertionError: known): {tail}",
        f"warning: {U}::TestWholeClass::test_two: fails under base too in {report} ({U}::TestWholeClass::test_two on cpu: failed: AssertionError: 1 != 2): {tail}",
    ]
    assert (ws / "matrix.yaml").read_text() == MATRIX.replace(ANCHOR, ANCHOR + IMPORTED)


@pytest.mark.parametrize(
    ("report", "line"),
    [
        (None, "note: no last report ({path}): could not check whether the imported tests fail under base too"),
        (b'{"schema_version": 1, "run": ', "warning: {path}: not a compat.json (invalid JSON at line 1 column 30: Expecting value); "
         "run `make report` (or `bazel run //tools:matrix -- report`) again; could not check whether the imported tests fail under base too"),
    ],
    ids=["no_report", "corrupt_report"],
)  # fmt: skip
def test_import_without_a_readable_report_says_it_could_not_check(ws, report, line):
    path = ws / "elsewhere" / "compat.json"
    if report is not None:
        path.parent.mkdir()
        path.write_bytes(report)
    out = run_cli(ws, *IMPORT_CPP, "--out", "elsewhere")
    assert (out.returncode, out.stderr.splitlines()) == (0, [line.format(path=path)])
    assert (ws / "matrix.yaml").read_text() == MATRIX.replace(ANCHOR, ANCHOR + IMPORTED)


# --- a suite that reaches for the probe's channel while it is collected ----------------------------

_OVERWRITE = 'import atexit, os\n\n\ndef _overwrite():\n    with open(os.environ["MATRIX_MARKER_PROBE_OUT"], "wb") as f:\n        f.write({data!r})\n\n\natexit.register(_overwrite)\n'


@pytest.mark.parametrize(
    "module",
    [
        "import json\n\njson.dump = lambda *a, **k: None\n",  # the probe would write nothing
        "import builtins\n\n_open = builtins.open\nbuiltins.open = lambda f, *a, **k: _open('/dev/null', *a, **k) if 'markers' in str(f) else _open(f, *a, **k)\n",
        "import os\n\nos.environ.pop('MATRIX_MARKER_PROBE_OUT', None)\nos.environ['MATRIX_MARKER'] = 'something_else'\n",
    ],
    ids=["replaces_json_dump", "redirects_open", "changes_the_environment"],
)
def test_a_test_module_cannot_change_what_the_probe_writes(ws, module):
    """Bound when the plugin loads, before any test module: the import is the same as without it
    (exit 70 or a wrong import before)."""
    (ws / "m" / "test_hostile.py").write_text(module + "\n\ndef test_h():\n    pass\n")
    out = run_cli(ws, *IMPORT_CPP)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "9 of 18 test(s) in m carry _expected_failure_cpp_serdes; 3 already listed for cpp_serdes"
    assert (ws / "matrix.yaml").read_text() == MATRIX.replace(ANCHOR, ANCHOR + IMPORTED)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"[" * 100_000, "RecursionError: maximum recursion depth exceeded while decoding a JSON array from a unicode string"),
        (b'{"collected": [1], "found": {}, "seen": [], "errors": []}', "not the shape marker_probe writes"),
        (b'{"collected": [], "found": {"a": 1}, "seen": [], "errors": [{}]}', "not the shape marker_probe writes"),
        (b"\xff\xfe", "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        (b"", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
    ],
    ids=["nested", "ids_not_strings", "found_not_strings", "not_utf8", "empty"],
)
def test_a_marker_list_overwritten_after_collection_is_refused_in_one_line(ws, data, why):
    """A test module that overwrites the probe's file when the process exits: exit 2, one line,
    nothing written (exit 70 before)."""
    (ws / "m" / "test_hostile.py").write_text(_OVERWRITE.format(data=data))
    out = run_cli(ws, *IMPORT_CPP)
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        "",
        f"error: collecting suite 'm' wrote an unreadable marker list ({why}): did a test module change json, open or that file?; nothing written\n",
    )
    assert (ws / "matrix.yaml").read_text() == MATRIX
