"""Smoke test of the benchmarks (`bazel test //bench:smoke_test`): each script runs on a tiny slice
and prints its table, so bench/ keeps working while the tools change under it. Timings are never
asserted; the numbers are only checked to be numbers. bench_matrix needs a nested Bazel, so its
modules (matrix_bench/) are tested one by one instead: option parsing, the step loop, the Bazel driver
with a stand-in `bazel`, the workspace copy, lock and @pyenv mirror, reading a testlogs tree and a BEP
file, matrix.yaml edits through a copy's own CLI, one real cell on the plain-pytest side, the cost table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_matrix  # noqa: E402
from matrix_bench import run_outputs  # noqa: E402  (a module: its tests_of is no test for pytest to collect)
from matrix_bench.context import Context  # noqa: E402
from matrix_bench.copy_edits import (  # noqa: E402
    MatrixEdit,
    add_entry,
    appended_comment,
    edit_yaml,
    impl_module_path,
    matrix_cli,
    remove_entry,
    set_granularity,
)
from matrix_bench.nested_bazel import Bazel, lock, make_copy, pyenv_mirror  # noqa: E402
from matrix_bench.plain_pytest import plain_env, run_plain, whole_cell  # noqa: E402
from matrix_bench.steps import COLD, SKIPPABLE, STEPS, Step, run_steps  # noqa: E402
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
    assert run_outputs.evidence_indexes(zipped.parent) == {index_member("t.py::a")}
    assert run_outputs.evidence_indexes(unzipped.parent) == {index_member("t.py::b")}
    assert run_outputs.evidence_indexes(tmp_path / "no_such_shard") == set()


# -- the steps and the loop that runs them ------------------------------------------------------------


def test_bench_matrix_steps_run_in_order_and_the_skip_choices_are_the_skippable_ones():
    assert [s.name for s in STEPS] == [
        "cold", "noop", "variant_edit", "runtime_edit", "file_edit", "incremental", "rerun", "transform", "tools"
    ]  # fmt: skip
    assert SKIPPABLE == ("plain", "noop", "variant_edit", "runtime_edit", "file_edit", "incremental", "rerun", "tools")
    assert [s.name for s in STEPS if not s.needs_cold] == ["cold", "tools"]


def _steps_log(ran: list[str], name: str, error: BaseException | None = None):
    def measure(ctx: Context) -> None:
        ran.append(name)
        if error is not None:
            raise error
        ctx.results.add(f"{name} measured", "1.00 s", "a note")

    return measure


def test_bench_matrix_a_broken_step_is_not_measured_and_the_next_one_runs(capsys):
    ctx, ran = Context(bench_matrix.parse_args(["--skip", "rerun"])), []
    steps = (
        replace(COLD, measure=_steps_log(ran, "cold")),
        Step("noop", _steps_log(ran, "noop", subprocess.TimeoutExpired(["bazel", "test"], 60))),
        Step("rerun", _steps_log(ran, "rerun")),
        Step("transform", _steps_log(ran, "transform", ValueError("no report.json")), skippable=False),
        Step("tools", _steps_log(ran, "tools"), needs_cold=False),
    )
    run_steps(ctx, steps)
    assert ran == ["cold", "noop", "transform", "tools"]
    assert ctx.results.not_measured == [
        "noop: TimeoutExpired: Command '['bazel', 'test']' timed out after 60 seconds",
        "rerun (--skip rerun)",
        "transform: ValueError: no report.json",
    ]
    capsys.readouterr()
    ctx.results.print()
    assert capsys.readouterr().out.splitlines()[-9:] == [
        "bench_matrix summary",
        "=" * 100,
        "cold measured           1.00 s  a note",  # the measurement column at least 20 wide, the value 8
        "tools measured          1.00 s  a note",
        "",
        "not measured:",
        "  - noop: TimeoutExpired: Command '['bazel', 'test']' timed out after 60 seconds",
        "  - rerun (--skip rerun)",
        "  - transform: ValueError: no report.json",
    ]


def test_bench_matrix_without_the_cold_run_the_steps_that_need_it_are_left_out():
    ctx, ran = Context(bench_matrix.parse_args([])), []
    steps = (replace(COLD, measure=_steps_log(ran, "cold", RuntimeError("bazel build --nobuild failed"))), *STEPS[1:-1],
             Step("tools", _steps_log(ran, "tools"), needs_cold=False))  # fmt: skip
    run_steps(ctx, steps)
    assert ran == ["cold", "tools"]
    assert ctx.results.not_measured == [
        "cold: RuntimeError: bazel build --nobuild failed",
        "noop, variant_edit, runtime_edit, file_edit, incremental, rerun, transform: they need the cold run",
    ]


# -- the nested Bazel, with a stand-in `bazel` that records its arguments --------------------------------

STAND_IN = """\
import json, sys, time
from pathlib import Path
with open(Path(__file__).with_suffix(".calls"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if "--hang" in sys.argv:
    try:
        time.sleep(300)
    except KeyboardInterrupt:  # Bazel's client cancels the build on SIGINT
        print("INFO: Build interrupted")
        sys.exit(8)
print("INFO: 3 processes: 1 internal, 2 linux-sandbox.")
print("//s:s_base_cpu                    PASSED in 1.2s")
print("Executed 2 out of 3 tests: 2 tests pass.")
sys.exit(3 if "test" in sys.argv else 0)
"""


@pytest.fixture
def stand_in_bazel(tmp_path) -> tuple[Bazel, Path]:
    binary = tmp_path / "bazel"
    binary.write_text(f"#!{sys.executable}\n{STAND_IN}")
    binary.chmod(0o755)
    (tmp_path / "logs").mkdir()
    return Bazel(str(binary), tmp_path, tmp_path / "ob", Path("/pyenv/mirror"), 2, tmp_path / "logs"), binary.with_suffix(".calls")


def _calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bench_matrix_bazel_gives_each_command_its_flags_also_through_the_cli_wrapper(stand_in_bazel, tmp_path):
    bazel, calls = stand_in_bazel
    startup = [f"--output_base={tmp_path / 'ob'}", "--max_idle_secs=900"]
    repo, build = ["--override_repository=pyenv=/pyenv/mirror"], ["--symlink_prefix=/", "--local_test_jobs=2"]
    expected = [
        [*startup, "test", *repo, *build, "//s:all"],
        [*startup, "query", *repo, "tests(//s:all)"],
        [*startup, "shutdown"],
    ]
    assert [bazel.argv(*args)[1:] for args in (("test", "//s:all"), ("query", "tests(//s:all)"), ("shutdown",))] == expected
    wrapper = bazel.wrapper(tmp_path / "wrapper")  # what the matrix CLI runs as $BAZEL in the copy
    for args in (["test", "//s:all"], ["query", "tests(//s:all)"], ["shutdown"]):
        assert subprocess.run([str(wrapper), *args], capture_output=True, timeout=60).returncode == (3 if args[0] == "test" else 0)
    assert _calls(calls) == expected


def test_bench_matrix_bazel_run_keeps_the_output_and_interrupts_a_run_past_its_time(stand_in_bazel, tmp_path):
    bazel, calls = stand_in_bazel
    run = bazel.run("cold1", "test", "//s:all", timeout=120, echo=False)
    assert (run.rc, run.executed, run.processes, run.timed_out) == (3, (2, 3), "3 processes: 1 internal, 2 linux-sandbox.", False)
    assert run.log == tmp_path / "logs" / "bazel_01_cold1.log" and run.log.read_text() == run.output
    hung = bazel.run("hung", "test", "--hang", "//s:all", timeout=1, echo=False)
    assert hung.timed_out and hung.log.name == "bazel_02_hung.log"
    # SIGINT ends the stand-in like Bazel's client (exit 8), or before its interpreter set up its handler
    assert hung.rc in (8, -signal.SIGINT), hung.output


def test_bench_matrix_copies_the_working_tree_not_what_git_ignores_nor_bazels_links(tmp_path):
    source, copy = tmp_path / "ws", tmp_path / "copy"
    source.mkdir()
    subprocess.run(["git", "init", "-q", str(source)], check=True)
    for name, text in {"tracked.py": "a", ".gitignore": "ignored.txt\n", "ignored.txt": "x", "user.bazelrc": "build -c dbg", "s/new.py": "b"}.items():
        (source / name).parent.mkdir(exist_ok=True)
        (source / name).write_text(text)
    subprocess.run(["git", "-C", str(source), "add", "tracked.py", ".gitignore"], check=True)
    (source / "bazel-out").symlink_to(tmp_path)
    (source / "tracked.py").write_text("a, edited")  # the working tree as it is, uncommitted changes included
    assert make_copy(source, copy) == 3
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == [".bench_matrix_copy", ".gitignore", "s/new.py", "tracked.py"]
    assert (copy / "tracked.py").read_text() == "a, edited"
    (copy / "tracked.py").write_text("changed in the copy")
    assert make_copy(source, copy) == 3 and (copy / "tracked.py").read_text() == "a, edited"  # a copy of its own is replaced
    with pytest.raises(SystemExit, match=f"error: {source} exists and is not a copy made by this benchmark; pass another --copy"):
        make_copy(tmp_path, source)


def test_bench_matrix_lock_refuses_a_second_run_on_the_same_path(tmp_path):
    held = lock(tmp_path / "copy.lock", "--copy", tmp_path / "copy")
    second = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path[:0] = sys.argv[1:3]; from matrix_bench.nested_bazel import lock; from pathlib import Path; "
         "lock(Path(sys.argv[3]), '--copy', Path(sys.argv[4]))", str(HERE), str(HERE.parent), str(tmp_path / "copy.lock"), str(tmp_path / "copy")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (second.returncode, second.stderr) == (
        1, f"error: another bench_matrix run is using --copy {tmp_path / 'copy'} (lock {tmp_path / 'copy.lock'}); wait for it, or pass another --copy\n"
    )  # fmt: skip
    assert (tmp_path / "copy.lock").read_text() == f"{os.getpid()}\n"
    held.close()


def test_bench_matrix_mirrors_the_pyenv_without_a_way_back_to_it(tmp_path):
    pyenv, mirror = tmp_path / "pyenv", tmp_path / "ob.pyenv"
    (pyenv / "venv" / "bin").mkdir(parents=True)
    for name in ("WORKSPACE", "BUILD.bazel", "frozen_requirements.txt", "python3"):
        (pyenv / name).write_text(f"{name} v1")
    assert pyenv_mirror(pyenv, mirror) == mirror
    assert sorted(p.name for p in mirror.iterdir()) == ["BUILD.bazel", "WORKSPACE", "frozen_requirements.txt", "python3", "venv"]
    assert not (mirror / "BUILD.bazel").is_symlink() and (mirror / "venv").resolve() == (pyenv / "venv").resolve()
    (mirror / "BUILD.bazel").write_text("written through the mirror")
    (pyenv / "frozen_requirements.txt").write_text("frozen_requirements.txt v2")
    pyenv_mirror(pyenv, mirror)  # refreshed from the original; the original untouched
    assert [(p / "BUILD.bazel").read_text() for p in (pyenv, mirror)] == ["BUILD.bazel v1", "BUILD.bazel v1"]
    assert (mirror / "frozen_requirements.txt").read_text() == "frozen_requirements.txt v2"
    assert pyenv_mirror(mirror, mirror) == mirror  # run from a `bazel run` that itself used the mirror


# -- what a run left: testlogs and BEP -------------------------------------------------------------------


def test_bench_matrix_reads_the_shards_reports_of_a_testlogs_tree(tmp_path):
    import bench_report

    from tools.matrix import statuses

    records = bench_report.make_records(60)
    matrix, testlogs, _bep, _mb = bench_report.setup(60, tmp_path)
    targets = [t for c in matrix.cells() for t in c.targets]
    reports = run_outputs.cell_reports(testlogs, targets)
    assert set(reports) == {(t.label, s) for t in targets for s in range(t.shard_count)}
    read = {(lab, t["nodeid"]): (t["metadata"]["matrix"]["status"], t["evidence_kept"]) for (lab, _s), r in reports.items() for t in r["tests"]}
    assert read == {(r.target, r.test): (r.status, False) for r in records}
    assert run_outputs.sum_durations(run_outputs.tests_of(reports)) == pytest.approx(sum(round(r.duration_s, 6) for r in records if r.status in bench_report.OUTCOME))  # the others: no duration
    assert run_outputs.restarts(reports) == sum(r.status in (statuses.CRASHED, statuses.TIMEOUT) for r in records)
    label = "//package_tests:package_tests_from_bytes_cpu"
    assert len(run_outputs.tests_of(reports, label)) == sum(r.target == label for r in records) > 0
    passed = sorted(r.test for r in records if r.target == label and r.status == statuses.PASSED)
    assert run_outputs.pick_test(reports, label) == next(t for t in passed if "[" not in t)
    assert run_outputs.pick_test(reports, "//no:such_target") is None


BEP = [
    {"id": {"started": {}}, "started": {"command": "test"}},
    {"id": {"testResult": {"label": "//s:a", "shard": 1, "attempt": 1}}, "testResult": {"status": "PASSED", "cachedLocally": True, "testAttemptDurationMillis": "1500"}},
    {"id": {"testResult": {"label": "//s:a", "shard": 2, "attempt": 1}}, "testResult": {"status": "PASSED", "testAttemptDurationMillis": "2500"}},
    {"id": {"testResult": {"label": "//s:b"}}, "testResult": {"status": "PASSED", "executionInfo": {"cachedRemotely": True}, "testAttemptDuration": "0.25s"}},
    {"id": {"testResult": {"label": "//s:c", "attempt": 1}}, "testResult": {"status": "FAILED", "testAttemptDurationMillis": "4000"}},
    {"id": {"testResult": {"label": "//s:d", "attempt": 2}}, "testResult": {"status": "PASSED", "testAttemptDurationMillis": "100"}},
    {"id": {"testSummary": {"label": "//s:a"}}, "testSummary": {"overallStatus": "PASSED"}},
    {"id": {"testSummary": {"label": "//s:b"}}, "testSummary": {"overallStatus": "PASSED"}},
    {"id": {"testSummary": {"label": "//s:c"}}, "testSummary": {"overallStatus": "FAILED"}},
    {"id": {"testSummary": {"label": "//s:d"}}, "testSummary": {"overallStatus": "FLAKY"}},
]  # fmt: skip


def test_bench_matrix_reads_what_a_run_executed_and_failed_and_how_long_from_the_bep(tmp_path):
    bep = tmp_path / "bep.json"
    bep.write_text("".join(json.dumps(e) + "\n" for e in BEP))
    assert run_outputs.executed_targets(bep) == {"//s:a", "//s:c", "//s:d"}  # //s:b: every shard cached
    assert run_outputs.failed_targets(bep) == {"//s:c"}  # FLAKY passed in the end: cached like a pass
    assert run_outputs.read_bep_durations(bep) == {("//s:a", 0): 1.5, ("//s:a", 1): 2.5, ("//s:b", 0): 0.25, ("//s:c", 0): 4.0, ("//s:d", 0): 0.1}
    missing = tmp_path / "no_bep.json"
    assert (run_outputs.executed_targets(missing), run_outputs.failed_targets(missing), run_outputs.read_bep_durations(missing)) == (set(), set(), {})


# -- a real workspace copy: matrix.yaml edits through the copy's own CLI, the plain-pytest side ----------

SUITE_MATRIX = """\
devices:
  cpu: {}
variants:
  base: {impl: tools.matrix.variants.base:Base, description: plain}  # the comment stays
suites:
  s:
    variants: [base]
    devices: [cpu]
expectations:
  s:
    base:
      xfail:
        test_a.py::test_fails: known
"""
SUITE_TESTS = "def test_passes():\n    pass\n\n\ndef test_fails():\n    assert False\n\n\ndef test_broken():\n    assert 1 == 2\n"


@pytest.fixture
def suite_ws(tmp_path) -> Path:
    """A workspace with its own copy of tools/matrix (its CLI regenerates the copy, as in the benchmark)."""
    ws = tmp_path / "ws"
    shutil.copytree(HERE.parent / "tools" / "matrix", ws / "tools" / "matrix", ignore=shutil.ignore_patterns("tests", "__pycache__"))
    (ws / "tools" / "__init__.py").write_text("")
    (ws / "s").mkdir()
    (ws / "s" / "test_a.py").write_text(SUITE_TESTS)
    (ws / "matrix.yaml").write_text(SUITE_MATRIX)
    out = matrix_cli(ws, sys.executable, dict(os.environ), "generate", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return ws


def test_bench_matrix_edit_regenerates_the_copy_and_restores_every_file(suite_ws):
    before = {p: p.read_bytes() for p in (suite_ws / "matrix.yaml", suite_ws / "s" / "BUILD.bazel")}
    with MatrixEdit(suite_ws, sys.executable, dict(os.environ)) as edit:
        changed = edit.change(remove_entry("s", "base", "cpu", "test_a.py::test_fails"))
        assert changed == ["s/BUILD.bazel"]
        assert "-      xfail:\n-        test_a.py::test_fails: known\n" in edit.diff
        assert "test_a.py::test_fails" not in (suite_ws / "s" / "BUILD.bazel").read_text()
        assert (suite_ws / "matrix.yaml").read_text() == SUITE_MATRIX.split("expectations:")[0] + "expectations: {}\n"
    assert {p: p.read_bytes() for p in before} == before


def test_bench_matrix_context_sets_a_suites_granularity_and_says_who_set_it(suite_ws):
    from tools.matrix import config

    ctx = Context(bench_matrix.parse_args([]))
    ctx.copy, ctx.python, ctx.tool_env = suite_ws, sys.executable, dict(os.environ)
    ctx.matrix = config.load(suite_ws / "matrix.yaml", suite_ws)
    ctx.granularity_origin, ctx.yaml_granularity = {}, {"s": "cell"}
    assert ctx.granularity_note() == "s=cell (matrix.yaml)"
    assert ctx.set_granularities({"s": "file"}, "--granularity") is True
    assert "    devices: [cpu]\n    granularity: file\n" in (suite_ws / "matrix.yaml").read_text()
    assert [t.label for t in ctx.matrix.targets()] == [t.label for t in ctx.matrix_now().targets()] == ["//s:s_base_cpu/test_a"]
    assert ctx.granularity_note() == "s=file (--granularity)"
    assert ctx.set_granularities({"s": "file"}, "set by the file-edit step") is False
    assert ctx.set_granularities({"s": "cell"}, "--granularity") is True
    assert ctx.granularity_note() == "s=cell (matrix.yaml)"  # back to matrix.yaml's own setting
    with pytest.raises(RuntimeError, match=r"--granularity: matrix.yaml has no suite t \(suites: s\)"):
        ctx.set_granularities({"t": "file"}, "--granularity")


def test_bench_matrix_plain_side_runs_a_cell_as_cell_mains_pytest_child(suite_ws, tmp_path, monkeypatch):
    from tools.matrix import config
    from tools.matrix.runtime.cell_config import SPEC_ENV

    monkeypatch.setenv("MATRIX_FROM_THE_OUTER_TEST", "1")  # the outer run's protocol variables must not leak in
    (cell,) = config.load(suite_ws / "matrix.yaml", suite_ws).cells()
    target = whole_cell(cell)
    env = plain_env(target, tmp_path / "env")
    assert env[SPEC_ENV] == target.spec().to_json() and env["TEST_TMPDIR"] == str(tmp_path / "env" / "tmpdir")
    assert not {"MATRIX_FROM_THE_OUTER_TEST", "TEST_SHARD_INDEX", "TEST_TOTAL_SHARDS"} & set(env)
    wall, (proc,) = run_plain([target], suite_ws, sys.executable, 1, tmp_path / "plain", deadline=time.time() + 600)
    assert (proc.label, proc.rc, proc.started, proc.died, proc.collect_errors) == ("//s:s_base_cpu", 1, True, False, 0)
    statuses = {t["nodeid"]: t["metadata"]["matrix"]["status"] for t in proc.tests}
    assert statuses == {"test_a.py::test_passes": "passed", "test_a.py::test_fails": "xfailed", "test_a.py::test_broken": "failed"}
    assert wall >= proc.wall_s > 0
