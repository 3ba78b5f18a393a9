"""Smoke test of the benchmarks (`bazel test //bench:smoke_test`): each script runs on a tiny slice
and prints its table, so bench/ keeps working while the tools change under it. Timings are never
asserted; the numbers are only checked to be numbers. bench_matrix needs a nested Bazel, so only its
option parsing and its matrix.yaml edits (the incremental and rerun measurements' input) run here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_matrix  # noqa: E402
from matrix_bench.copy_edits import add_entry, appended_comment, edit_yaml, impl_module_path, remove_entry, set_granularity  # noqa: E402
from matrix_bench.run_outputs import evidence_indexes  # noqa: E402
from matrix_bench.steps.source_edits import VARIANT_MODULE_EDIT  # noqa: E402
from matrix_bench.variant_costs import VARIANT_COST_HEADER, variant_costs  # noqa: E402

NUMBER = r"\d+\.\d+"


def run_script(*argv: str) -> list[str]:
    out = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr == ""
    return out.stdout.splitlines()


def test_bench_generate_prints_its_table_for_200_targets():
    lines = run_script("bench_generate.py", "--sizes", "200")
    assert lines[:2] == ["generator: load + validate + write BUILD files", " targets   seconds   growth"]
    assert re.fullmatch(rf" +200 +{NUMBER} +-", lines[2]), lines[2]
    assert len(lines) == 3


def test_bench_report_collects_200_records_without_a_problem():
    lines = run_script("bench_report.py", "--sizes", "200")
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["records", "collect"])
    (row,) = lines[header + 1 :]  # no `problem:` line: the written tree and BEP file agree with what collect reads
    records, *seconds = row.split()
    # collect adds not_run records for the cells the last, partly generated test file did not reach
    assert 200 <= int(records) <= 213, row
    assert len(seconds) == 11 and seconds[4] == "-" and re.fullmatch(r"\d+", seconds[9]), row  # growth, max RSS MB
    assert all(re.fullmatch(NUMBER, s) for s in seconds[:4] + seconds[5:9] + seconds[10:]), row


def test_bench_matrix_parses_its_options():
    lines = run_script("bench_matrix.py", "--help")
    assert lines[0].startswith("usage: bench_matrix.py [-h] [--targets TARGETS] [--quick]")
    args = bench_matrix.parse_args(["--quick", "--skip", "plain"])
    assert (args.quick, args.rounds, args.budget_min, args.skip) == (True, 2, 90.0, ["plain"])


MATRIX = """\
suites:
  s:
    variants: [base]  # a comment that the edit keeps
    devices: [cpu]
expectations: {}
"""


def test_bench_matrix_adds_and_removes_an_expectation():
    added = edit_yaml(MATRIX, add_entry("s", "base", "xfail", "test_a.py::test_x", "planted"))
    assert added == MATRIX.replace(
        "expectations: {}\n", "expectations:\n  s:\n    base:\n      xfail:\n        test_a.py::test_x: planted\n"
    )
    removed = edit_yaml(added, remove_entry("s", "base", "cpu", "test_a.py::test_x"))
    assert removed == MATRIX  # every level the entry emptied goes



def test_bench_matrix_granularity_option_lists_the_cold_runs_settings():
    args = bench_matrix.parse_args(["--granularity", "export_tests=cell,file", "--granularity", "package_tests=file"])
    assert args.granularity_runs == [
        {"export_tests": "cell", "package_tests": "file"},
        {"export_tests": "file", "package_tests": "file"},  # a suite with fewer values keeps its last
    ]
    assert bench_matrix.parse_args([]).granularity_runs == []
    assert bench_matrix.parse_args([]).edit_test_file == "export_tests/test_dtypes.py"


def test_bench_matrix_granularity_option_refuses_what_is_not_a_setting():
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_matrix.py"), "--granularity", "export_tests=row"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "bench_matrix.py: error: --granularity 'export_tests=row': row is not one of cell, file"
    )
    for bad, why in [
        ("export_tests", "'export_tests': expected SUITE=G[,G...] with G one of cell, file"),
        ("=file", "'=file': expected SUITE=G[,G...] with G one of cell, file"),
    ]:
        try:
            bench_matrix.parse_granularity([bad])
        except ValueError as e:
            assert str(e) == why
        else:
            raise AssertionError(f"{bad!r} accepted")


def test_bench_matrix_sets_a_suites_granularity_keeping_comments():
    text = edit_yaml(MATRIX, set_granularity("s", "file"))
    assert text == MATRIX.replace("    devices: [cpu]\n", "    devices: [cpu]\n    granularity: file\n")
    assert edit_yaml(text, set_granularity("s", "cell")) == text.replace("granularity: file", "granularity: cell")


def test_bench_matrix_appends_a_comment_and_restores_the_file(tmp_path):
    source = tmp_path / "variants.py"
    source.write_bytes(b"class V:\n    pass")  # no final newline: the comment still gets its own line
    with appended_comment(source, "probe"):
        assert source.read_bytes() == b"class V:\n    pass\n# probe\n"
    assert source.read_bytes() == b"class V:\n    pass"


def test_bench_matrix_finds_a_variants_module_file(tmp_path):
    (tmp_path / "tools/matrix/variants").mkdir(parents=True)
    (tmp_path / "tools/matrix/variants/package.py").write_text("")
    (tmp_path / "my_project").mkdir()
    (tmp_path / "my_project/variants.py").write_text("")
    assert impl_module_path("tools.matrix.variants.package:FromBytes", tmp_path) == VARIANT_MODULE_EDIT
    assert impl_module_path("my_project.variants:MyVariant", tmp_path) == "my_project/variants.py"


def _test(nodeid: str, status: str, duration_s: float, kept: bool = False, **matrix: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "evidence_kept": kept, "metadata": {"matrix": {"status": status, "duration_s": duration_s, **matrix}}}


def test_bench_matrix_variant_table_has_the_evidence_cost_and_the_tests_that_kept_it():
    per = {
        ("s", "base"): {("cpu", "t.py::a"): _test("t.py::a", "passed", 0.1), ("cpu", "t.py::b"): _test("t.py::b", "passed", 0.3)},
        ("s", "serdes"): {
            ("cpu", "t.py::a"): _test("t.py::a", "passed", 0.2, transform_s=0.05, check_s=0.01, evidence_s=0.002, transform_check="passed"),
            ("cpu", "t.py::b"): _test("t.py::b", "passed", 0.4, transform_s=0.07, check_s=0.03, evidence_s=0.004, transform_check="passed"),
            ("cpu", "t.py::c"): _test("t.py::c", "failed", 0.5, kept=True, evidence_s=0.5, transform_check="failed: output: max abs difference 1"),
            ("cpu", "t.py::d"): _test("t.py::d", "crashed", 0.0, kept=True),
        },
    }
    base, serdes = variant_costs(per)
    assert (base.variant, base.tests, base.kept_evidence, base.mean_evidence_s, base.verdicts) == ("base", 2, 0, 0.0, "2 none")
    assert (serdes.tests, serdes.kept_evidence, serdes.verdicts) == (2, 2, "1 failed, 1 none, 2 passed")
    assert serdes.mean_evidence_s == pytest.approx(0.003)  # the tests that passed in both, like the other means
    assert (serdes.mean_check_s, serdes.ratio) == (pytest.approx(0.02), pytest.approx(1.5))
    header = VARIANT_COST_HEADER.split()
    assert header[header.index("check") + 2 : header.index("check") + 7] == ["mean", "evidence", "s", "kept", "evidence"]
    line = serdes.line().split()
    assert line[:3] == ["s", "serdes", "2"] and line[8:10] == ["0.0030", "2"], line
    assert "evidence 3.0 ms/test (2 tests kept it)" in serdes.note()


def test_bench_matrix_finds_the_evidence_a_shard_kept_zipped_or_not(tmp_path):
    from tools.matrix.runtime.evidence import index_member

    zipped, unzipped = tmp_path / "shard_1_of_2" / "test.outputs", tmp_path / "shard_2_of_2" / "test.outputs"
    zipped.mkdir(parents=True)
    with zipfile.ZipFile(zipped / "outputs.zip", "w") as z:
        z.writestr(index_member("t.py::a"), "{}")
        z.writestr(index_member("t.py::a").replace("evidence.json", "call-1-saved.pt2"), b"")
        z.writestr("report.json", "{}")
    (unzipped / index_member("t.py::b")).parent.mkdir(parents=True)
    (unzipped / index_member("t.py::b")).write_text("{}")
    assert evidence_indexes(zipped.parent) == {index_member("t.py::a")}
    assert evidence_indexes(unzipped.parent) == {index_member("t.py::b")}
    assert evidence_indexes(tmp_path / "no_such_shard") == set()
