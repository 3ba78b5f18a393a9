"""The runtime of a matrix cell (tools/matrix/runtime): cell_main run the way Bazel runs a matrix
target, on synthetic suites under fixtures/runtime: strict expectations, sharding, --test_filter,
the JSON report and JUnit XML, crash / abort / hang recovery, an unavailable device.

The cells run in child processes, a few at a time (fixtures/cellrun.py); the selection logic is
also checked in-process where many cases are cheap to cover.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tools.matrix import durations, statuses
from tools.matrix.records import RUNTIME_FIELDS
from tools.matrix.runtime import outputs, selection
from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses

# --- the synthetic suites' tests ---------------------------------------------------------------

EXPECT = "test_expect.py"
KNOWN, FIXED, GPU = f"{EXPECT}::test_known_bug", f"{EXPECT}::test_fixed_bug", f"{EXPECT}::test_needs_gpu"
GROUP_A, GROUP_B = f"{EXPECT}::TestGroup::test_a", f"{EXPECT}::TestGroup::test_b"
UNITTEST_KNOWN, ENVIRONMENT = f"{EXPECT}::TestUnittestStyle::test_known_bug", f"{EXPECT}::test_environment"
OK_XFAIL = {KNOWN: "tracked in #1", f"{EXPECT}::TestGroup": "the whole group is broken", UNITTEST_KNOWN: "tracked in #2"}
OK_SKIP = {GPU: "needs a GPU, none here"}
OK_STATUSES = {
    KNOWN: statuses.XFAILED, FIXED: statuses.PASSED, GPU: statuses.SKIPPED, GROUP_A: statuses.XFAILED,
    GROUP_B: statuses.XFAILED, UNITTEST_KNOWN: statuses.XFAILED, ENVIRONMENT: statuses.PASSED,
}  # fmt: skip

MANY = [
    "test_many.py::test_alpha", "test_many.py::test_beta", "test_many.py::test_gamma[1]",
    "test_many.py::test_gamma[2]", "test_many.py::test_gamma[3]", "test_many.py::test_delta",
    "test_many.py::TestK::test_one", "test_many.py::TestK::test_two", "test_many.py::TestCaseStyle::test_one",
    "test_many.py::TestCaseStyle::test_three", "test_more.py::test_alpha", "test_more.py::test_epsilon",
]  # fmt: skip
MANY_FILES = ("test_many.py", "test_more.py")
# --test_filter seen by the test_many.py target of a per-file cell -> the problem it reports ("" for none).
SIBLING_FILTERS = {
    "other_file": ("test_more.py::test_epsilon", ""),  # the other target's test: not this one's business
    "bare_name": ("test_epsilon", ""),  # may be the other file's: undecidable here, so not a failure
    "file_typo": ("test_mroe.py::test_epsilon", "--test_filter 'test_mroe.py::test_epsilon' matches no test of //syn:cell/test_many (in any shard)"),
    "own_file_typo": ("test_many.py::test_bta", "--test_filter 'test_many.py::test_bta' matches no test of //syn:cell/test_many (in any shard)"),
}

ROBUST = {
    "test_robust_broken.py": statuses.ERROR,  # fails to import; runs first
    "test_robust.py::test_1_before": statuses.PASSED,
    "test_robust.py::test_2_fails": statuses.FAILED,
    "test_robust.py::test_3_segfault": statuses.CRASHED,
    "test_robust.py::test_4_between": statuses.PASSED,
    "test_robust.py::test_5_abort": statuses.CRASHED,
    "test_robust.py::test_6_skipped": statuses.SKIPPED,
    "test_robust.py::test_7_hang": statuses.TIMEOUT,
    "test_robust.py::test_8_setup_error": statuses.ERROR,
    "test_robust.py::test_9_after": statuses.PASSED,
}
ROBUST_TIMEOUT_S = 5
ROBUST_TARGET = "//syn/runtime:robust_cpu"

FILTERS = {
    # node id, Class.test (pytest class and unittest.TestCase)
    "filter_ids": (
        "test_many.py::test_beta,TestK.test_one,TestCaseStyle.test_three",
        {"test_many.py::test_beta", "test_many.py::TestK::test_one", "test_many.py::TestCaseStyle::test_three"},
    ),
    # bare name (every parameter, every file) and a glob
    "filter_names": (
        "test_gamma,*alpha",
        {"test_many.py::test_gamma[1]", "test_many.py::test_gamma[2]", "test_many.py::test_gamma[3]",
         "test_many.py::test_alpha", "test_more.py::test_alpha"},
    ),
}  # fmt: skip
SHARD_TOTALS = (2, 3)
SHARD_CELLS = {f"shard_{total}_{index}": (total, index) for total in SHARD_TOTALS for index in range(total)}

# Sharding by recorded durations: fixtures/sharding/test_durations.json records test_heavy at 0.6 s
# and the light tests at 0.1 s (test_quick_b not at all: the median), as long as each sleeps.
SLEEPY = {
    "test_sleepy.py::test_heavy": 0.6,
    **{f"test_sleepy.py::test_light[{n}]": 0.1 for n in (1, 2, 3)},
    "test_sleepy.py::test_quick_a": 0.1,
    "test_sleepy.py::test_quick_b": 0.1,
}
SLEEPY_DURATIONS = "sharding/test_durations.json"  # relative to the cwd, as Bazel passes <package>/test_durations.json
PLANNED_CELLS = {f"planned_{index}": index for index in range(2)}
UNPLANNED_CELLS = {f"unplanned_{index}": index for index in range(2)}


def _shard_env(index: int, total: int) -> dict[str, str]:
    return {"TEST_SHARD_INDEX": str(index), "TEST_TOTAL_SHARDS": str(total), "TEST_SHARD_STATUS_FILE": "{tmp}/shard_status"}


def _sleepy_shard(index: int, durations_file: str | None) -> Cell:
    env = {"TEST_SHARD_INDEX": str(index), "TEST_TOTAL_SHARDS": "2", "TEST_SHARD_STATUS_FILE": "{tmp}/shard_status"}
    return Cell("sharding", ("test_sleepy.py",), env=env, durations_file=durations_file or "")


# fixtures/faults: every way a test can take its process or the runtime's bookkeeping down, among
# healthy tests in other files. Every test must end up in every output with its own status.
FAULTS_DIR = "faults"
FAULT_FILES = ("test_a_healthy.py", "test_b_import_segfault.py", "test_c_import_error.py", "test_d_faults.py", "test_e_healthy.py")
FAULT_TIMEOUT_S = 3
F = "test_d_faults.py"
FAULTS = {
    "test_a_healthy.py::test_ok_1": statuses.PASSED,
    "test_a_healthy.py::test_ok_2": statuses.PASSED,
    "test_a_healthy.py::test_ok_param[1]": statuses.PASSED,
    "test_a_healthy.py::test_ok_param[2]": statuses.PASSED,
    "test_a_healthy.py::test_prints_10_mb": statuses.PASSED,
    "test_b_import_segfault.py": statuses.CRASHED,
    "test_c_import_error.py": statuses.ERROR,
    f"{F}::test_01_ok": statuses.PASSED,
    f"{F}::test_02_segfault": statuses.CRASHED,
    f"{F}::test_03_ok": statuses.PASSED,
    f"{F}::test_04_abort": statuses.CRASHED,
    f"{F}::test_05_hang": statuses.TIMEOUT,
    f"{F}::test_06_exit_0": statuses.CRASHED,
    f"{F}::test_07_killpg": statuses.CRASHED,
    f"{F}::test_08_junk_into_journal": statuses.PASSED,
    f"{F}::test_09_wipe_tempdir": statuses.PASSED,
    f"{F}::test_10_ok": statuses.PASSED,
    f"{F}::test_11_expected_crash": statuses.XFAILED,
    f"{F}::test_12_ok": statuses.PASSED,
    f"{F}::test_13_ends_the_session": statuses.CRASHED,
    f"{F}::test_14_ok": statuses.PASSED,
    "test_e_healthy.py::test_after_1": statuses.PASSED,
    "test_e_healthy.py::TestAfter::test_2": statuses.PASSED,
    "test_e_healthy.py::TestAfter::test_3": statuses.PASSED,
}
FAULT_MESSAGES = {
    "test_b_import_segfault.py": "the test process died (SIGSEGV) while importing this file",
    f"{F}::test_02_segfault": "the test process died (SIGSEGV) inside this test",
    f"{F}::test_04_abort": "the test process died (SIGABRT) inside this test",
    f"{F}::test_05_hang": f"timed out after {FAULT_TIMEOUT_S}s (per-test timeout)",
    f"{F}::test_06_exit_0": "the test process exited (status 0) inside this test",
    f"{F}::test_07_killpg": "the test process died (SIGKILL) inside this test",
    f"{F}::test_11_expected_crash": "the test process died (SIGSEGV) inside this test",
    f"{F}::test_13_ends_the_session": "the test process exited (status 2) inside this test",
}
# What each record's log_tail must show: faulthandler's stack (or the watchdog's) naming the culprit.
FAULT_TAILS = {
    "test_b_import_segfault.py": ("Fatal Python error: Segmentation fault", "test_b_import_segfault.py"),
    f"{F}::test_02_segfault": ("Fatal Python error: Segmentation fault", "in test_02_segfault"),
    f"{F}::test_04_abort": ("Fatal Python error: Aborted", "in test_04_abort"),
    f"{F}::test_05_hang": (f"TIMEOUT: {F}::test_05_hang ran longer than {FAULT_TIMEOUT_S}s", "in test_05_hang"),
    f"{F}::test_11_expected_crash": ("Fatal Python error: Segmentation fault", "in test_11_expected_crash"),
    f"{F}::test_13_ends_the_session": ("this test ends the session",),
}
IMPORT_FAULT_FILES = ("test_b_import_segfault.py", "test_c_import_error.py", "test_e_healthy.py")
FAULT_XFAIL = {f"{F}::test_11_expected_crash": "segfaults in the C++ deserializer (#99)"}

# Heaviest first: the fault cell restarts its child eight times, the robustness cell three times.
CELLS: dict[str, Cell] = {
    "faults": Cell(FAULTS_DIR, FAULT_FILES, test_timeout_s=FAULT_TIMEOUT_S, xfail=FAULT_XFAIL, target="//syn/faults:faults_cpu"),
    "robust": Cell("runtime", ("test_robust_broken.py", "test_robust.py"), test_timeout_s=ROBUST_TIMEOUT_S, target=ROBUST_TARGET),
    "expect_ok": Cell("runtime", (EXPECT,), xfail=OK_XFAIL, skip=OK_SKIP),
    "expect_stale": Cell("runtime", (EXPECT,), xfail={**OK_XFAIL, FIXED: "was broken once"}, skip=OK_SKIP),
    "expect_unmatched": Cell(
        "runtime",
        (EXPECT,),
        xfail={**OK_XFAIL, f"{EXPECT}::test_renamed_long_ago": "stale"},
        skip={**OK_SKIP, f"{EXPECT}::TestGone": "stale too"},
    ),  # fmt: skip
    **{
        name: Cell(
            "runtime",
            MANY_FILES,
            env={"TEST_SHARD_INDEX": str(index), "TEST_TOTAL_SHARDS": str(total), "TEST_SHARD_STATUS_FILE": "{tmp}/shard_status"},
        )
        for name, (total, index) in SHARD_CELLS.items()
    },
    **{name: _sleepy_shard(index, SLEEPY_DURATIONS) for name, index in PLANNED_CELLS.items()},
    **{name: _sleepy_shard(index, None) for name, index in UNPLANNED_CELLS.items()},
    "filter_ids": Cell("runtime", MANY_FILES, env={"TESTBRIDGE_TEST_ONLY": FILTERS["filter_ids"][0]}),
    # The xfail entry names a test the filter leaves out: it matches a test, so it is no problem.
    "filter_names": Cell(
        "runtime", MANY_FILES, xfail={"test_many.py::test_beta": "filtered out"}, env={"TESTBRIDGE_TEST_ONLY": FILTERS["filter_names"][0]}
    ),
    "cuda": Cell("runtime", MANY_FILES, device="cuda", requires_gpu=True),
    # requires_gpu, not named cuda: what a backend vendor's matrix.yaml has (torch.device("rocm") is unknown).
    "rocm": Cell("runtime", MANY_FILES, device="rocm", requires_gpu=True),
    # Named like a GPU but not requires_gpu: runs here (its tests do not touch the device).
    "cuda_sim": Cell("runtime", MANY_FILES, device="cuda_sim"),
    # A filter that selects nothing fails the cell, in every shard; one that matches a test of another
    # shard does not fail this one.
    "filter_typo": Cell("runtime", MANY_FILES, env={"TESTBRIDGE_TEST_ONLY": "test_bta"}),
    # One file's target of a `granularity: file` cell: test_more.py is another target's file.
    **{
        f"filter_sibling_{name}": Cell("runtime", ("test_many.py",), env={"TESTBRIDGE_TEST_ONLY": pattern}, target="//syn:cell/test_many", cell_files=("test_many.py", "test_more.py"))
        for name, (pattern, _problem) in SIBLING_FILTERS.items()
    },
    "filter_typo_shard_1": Cell("runtime", MANY_FILES, env={"TESTBRIDGE_TEST_ONLY": "test_bta", **_shard_env(1, 2)}),
    **{
        f"filter_one_shard_{i}": Cell("runtime", MANY_FILES, env={"TESTBRIDGE_TEST_ONLY": "test_more.py::test_epsilon", **_shard_env(i, 2)})
        for i in range(2)
    },
    # The filter names a file whose import crashes: it matched that file, so it is no typo.
    "filter_crashed_file": Cell(
        FAULTS_DIR, ("test_b_import_segfault.py", "test_e_healthy.py"), env={"TESTBRIDGE_TEST_ONLY": "test_b_import_segfault.py"}
    ),
    # Every shard imports every file; a file that cannot be imported is reported once, by shard 0.
    **{f"import_faults_shard_{i}": Cell(FAULTS_DIR, IMPORT_FAULT_FILES, env=_shard_env(i, 2)) for i in range(2)},
    # No test can run: the outputs still exist and say why.
    "bad_impl": Cell("runtime", MANY_FILES, impl="faults.no_such_module:Nope", target="//syn:bad_impl"),
    "crash_at_start": Cell("runtime", MANY_FILES, impl="faults.crash_at_import:Crash"),
    "sigterm": Cell("faults/sigterm", ("test_sigterm.py",), test_timeout_s=60),
    "sigkill": Cell("faults/sigkill", ("test_sigkill.py",), test_timeout_s=60),
}


cells = pool_fixture(CELLS, "runtime")


def junit_cases(run) -> dict[str, object]:
    """JUnit <testcase> elements by node id (classname is '<suite>.<file>', name the rest of the id)."""
    assert run.xml is not None, run.explain()
    (suite,) = run.xml.findall("testsuite")
    cases = {}
    for case in suite.findall("testcase"):
        file, name = case.get("classname").removeprefix("syn."), case.get("name")
        cases[file if name == file else f"{file}::{name}"] = case  # a collection error is named after its file
    return cases


# --- selection, in-process ---------------------------------------------------------------------


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("count", [0, 1, 5, 12, 13])
def test_shard_partitions_any_list(total, count):
    ids = [f"t.py::test_{i:02d}" for i in reversed(range(count))]
    shards = [selection.shard(ids, index, total) for index in range(total)]
    assert sorted(n for s in shards for n in s) == sorted(ids)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shards == [selection.shard(list(reversed(ids)), index, total) for index in range(total)]  # order-independent


def test_shard_index_out_of_range():
    with pytest.raises(ValueError, match="shard index 3 outside 0..2"):
        selection.shard(["a"], 3, 3)


@pytest.mark.parametrize(
    "pattern, selected",
    [
        ("f.py::test_a", {"f.py::test_a"}),
        ("f.py::K::test_b", {"f.py::K::test_b"}),
        ("K.test_b", {"f.py::K::test_b"}),
        ("K::test_b", {"f.py::K::test_b"}),
        ("K", {"f.py::K::test_b", "f.py::K::test_p[1]"}),
        ("test_a", {"f.py::test_a", "g.py::test_a"}),
        ("test_p", {"f.py::K::test_p[1]"}),
        ("test_p[1]", {"f.py::K::test_p[1]"}),
        ("g.py", {"g.py::test_a"}),
        ("test_?", {"f.py::test_a", "f.py::K::test_b", "f.py::K::test_p[1]", "g.py::test_a"}),  # the name without [params]
        ("*_a", {"f.py::test_a", "g.py::test_a"}),
        ("f.py::K::*", {"f.py::K::test_b", "f.py::K::test_p[1]"}),
        ("test_a,K.test_b", {"f.py::test_a", "g.py::test_a", "f.py::K::test_b"}),
        ("test_ab", set()),  # a prefix of a name is no match
    ],
)
def test_filter_forms(pattern, selected):
    ids = ["f.py::test_a", "f.py::K::test_b", "f.py::K::test_p[1]", "g.py::test_a"]
    assert set(selection.select(ids, selection.parse_filter(pattern))) == selected


def test_expectation_picks_the_most_specific_entry():
    entries = {"f.py": "file", "f.py::K": "class", "f.py::K::test_p": "base", "f.py::K::test_p[2]": "exact"}
    assert selection.expectation_for("f.py::K::test_p[2]", entries) == ("f.py::K::test_p[2]", "exact")
    assert selection.expectation_for("f.py::K::test_p[1]", entries) == ("f.py::K::test_p", "base")
    assert selection.expectation_for("f.py::K::test_q", entries) == ("f.py::K", "class")
    assert selection.expectation_for("f.py::test_z", entries) == ("f.py", "file")
    assert selection.expectation_for("ff.py::test_z", entries) is None
    assert selection.expectation_for("f.py::K::test_pp", {"f.py::K::test_p": "base"}) is None


# --- strict expectations -----------------------------------------------------------------------


@uses("expect_ok")
def test_listed_failures_are_xfailed_and_skips_skipped(cells):
    run = cells["expect_ok"]
    assert run.returncode == 0, run.explain()
    assert run.statuses == OK_STATUSES, run.explain()
    assert run.problems == [] and run.report["exitcode"] == 0
    known = run.matrix(KNOWN)
    assert known["expectation"] == KNOWN and known["error_type"] == "AssertionError" and "known bug" in known["message"]
    assert run.matrix(GROUP_B)["expectation"] == f"{EXPECT}::TestGroup"  # a class entry covers its tests
    assert run.matrix(FIXED)["expectation"] is None
    gpu = run.matrix(GPU)
    assert "needs a GPU, none here" in gpu["message"] and f"matrix.yaml skip ({GPU})" in gpu["message"]
    cases = junit_cases(run)
    for nodeid in (KNOWN, GPU, GROUP_A, UNITTEST_KNOWN):
        assert cases[nodeid].find("skipped") is not None and cases[nodeid].find("failure") is None, nodeid
    assert "needs a GPU, none here" in cases[GPU].find("skipped").get("message")


@uses("expect_stale")
def test_listed_passing_test_is_xpassed_and_fails_the_target(cells):
    run = cells["expect_stale"]
    assert run.returncode == 1, run.explain()
    assert run.statuses == {**OK_STATUSES, FIXED: statuses.XPASSED}, run.explain()
    assert run.problems == []  # the xpass alone fails the target
    message = run.matrix(FIXED)["message"]
    assert f"Remove the xfail entry {FIXED!r}" in message and "expectations.syn.base" in message
    assert f"[matrix] XPASSED: {FIXED}: XPASS(strict)" in run.output
    failure = junit_cases(run)[FIXED].find("failure")
    assert failure is not None and failure.get("message").startswith("xpassed:")


@uses("expect_unmatched")
def test_entry_matching_no_test_fails_the_target(cells):
    run = cells["expect_unmatched"]
    assert run.returncode == 1, run.explain()
    assert run.statuses == OK_STATUSES, run.explain()  # nothing else went wrong
    assert sorted(run.problems) == [
        f"matrix.yaml skip entry '{EXPECT}::TestGone' matches no test of syn; remove or fix it (expectations.syn.base)",
        f"matrix.yaml xfail entry '{EXPECT}::test_renamed_long_ago' matches no test of syn; remove or fix it (expectations.syn.base)",
    ]
    assert run.output.count("[matrix] ERROR: matrix.yaml") == 2


# --- sharding and --test_filter ----------------------------------------------------------------


@uses(*SHARD_CELLS)
@pytest.mark.parametrize("total", SHARD_TOTALS)
def test_shards_partition_the_tests(cells, total):
    runs = [cells[f"shard_{total}_{index}"] for index in range(total)]
    shards = []
    for index, run in enumerate(runs):
        assert run.returncode == 0, run.explain()
        assert (run.tmp / "shard_status").exists(), "TEST_SHARD_STATUS_FILE was not touched"
        assert (run.report["matrix"]["shard_index"], run.report["matrix"]["total_shards"]) == (index, total)
        assert set(run.statuses.values()) == {statuses.PASSED}
        shards.append(list(run.tests))
    everything = [n for shard in shards for n in shard]
    assert sorted(everything) == sorted(MANY), "the shards' union is not every test exactly once"
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1, sizes
    assert [sorted(s) for s in shards] == [sorted(MANY)[index::total] for index in range(total)]  # round-robin: no durations


def _sleepy_shards(cells, names) -> list[list[str]]:
    shards = []
    for index, name in enumerate(names):
        run = cells[name]
        assert run.returncode == 0, run.explain()
        assert (run.tmp / "shard_status").exists(), "TEST_SHARD_STATUS_FILE was not touched"
        assert (run.report["matrix"]["shard_index"], run.report["matrix"]["total_shards"]) == (index, 2)
        assert set(run.statuses.values()) == {statuses.PASSED}, run.explain()
        for nodeid in run.tests:
            assert run.matrix(nodeid)["duration_s"] >= SLEEPY[nodeid] * 0.95, (nodeid, run.matrix(nodeid))  # it slept that long
        shards.append(sorted(run.tests))
    assert sorted(n for shard in shards for n in shard) == sorted(SLEEPY), "the shards' union is not every test exactly once"
    return shards


@uses(*PLANNED_CELLS)
def test_shards_planned_from_recorded_durations(cells):
    """With --durations the heavy test gets a shard to itself (0.6 s against 5 x 0.1 s); round-robin
    would pair it with two light ones (0.8 s against 0.3 s)."""
    shards = _sleepy_shards(cells, PLANNED_CELLS)
    assert shards == [["test_sleepy.py::test_heavy"], sorted(set(SLEEPY) - {"test_sleepy.py::test_heavy"})]
    recorded = durations.for_cell(durations.load(cells.root / SLEEPY_DURATIONS), "base", "cpu")
    assert "test_sleepy.py::test_quick_b" not in recorded and len(recorded) == len(SLEEPY) - 1
    assert shards == durations.deal(sorted(SLEEPY), 2, recorded)
    planned = [sum(SLEEPY[n] for n in shard) for shard in shards]
    assert max(planned) == pytest.approx(0.6)


@uses(*UNPLANNED_CELLS)
def test_shards_without_durations_are_round_robin(cells):
    shards = _sleepy_shards(cells, UNPLANNED_CELLS)
    ids = sorted(SLEEPY)
    assert shards == [ids[0::2], ids[1::2]]
    assert "test_sleepy.py::test_heavy" in shards[0] and len(shards[0]) == 3


@uses(*FILTERS)
@pytest.mark.parametrize("name", FILTERS)
def test_test_filter_selects(cells, name):
    run = cells[name]
    pattern, expected = FILTERS[name]
    assert run.returncode == 0, run.explain()
    assert set(run.tests) == expected, f"TESTBRIDGE_TEST_ONLY={pattern!r}"
    assert run.report["matrix"]["test_filter"] == pattern
    assert run.problems == []


@uses("filter_typo", "filter_typo_shard_1")
@pytest.mark.parametrize("name", ["filter_typo", "filter_typo_shard_1"])
def test_filter_matching_nothing_fails_the_cell_with_near_matches(cells, name):
    """A typo in --test_filter is not a green "0 tests": every shard fails, naming what was meant."""
    run = cells[name]
    assert run.returncode == 1, run.explain()
    assert run.tests == {}
    (problem,) = run.problems
    assert problem.startswith("--test_filter 'test_bta' matches no test of syn (in any shard); did you mean: test_many.py::test_beta"), (
        problem
    )
    assert f"[matrix] ERROR: {problem}" in run.output


@uses(*(f"filter_sibling_{name}" for name in SIBLING_FILTERS))
@pytest.mark.parametrize("name", SIBLING_FILTERS)
def test_filter_in_one_files_target_fails_only_when_it_can_match_nothing_in_the_cell(cells, name):
    """granularity: file: a filter naming another target's file (or a bare name, which may be that
    file's) selects nothing here and passes; one naming this file or no file of the cell fails."""
    run = cells[f"filter_sibling_{name}"]
    pattern, problem = SIBLING_FILTERS[name]
    assert run.tests == {}, run.explain()
    assert [p.split("; did you mean")[0] for p in run.problems] == ([problem] if problem else [])
    assert run.returncode == (1 if problem else 0), run.explain()


@pytest.mark.parametrize(
    ("patterns", "siblings", "decidable"),
    [
        (["test_bta"], (), True),  # a whole cell sees every file
        (["test_more.py::test_x"], ("test_more.py",), False),
        (["test_x"], ("test_more.py",), False),
        (["test_*.py::test_x"], ("test_more.py",), False),
        (["test_typo.py::test_x"], ("test_more.py",), True),
        (["test_typo.py::test_x", "test_more.py::test_y"], ("test_more.py",), False),
        (["test_typo.py"], ("test_more.py",), True),
    ],
)
def test_decidable_here(patterns, siblings, decidable):
    assert selection.decidable_here(patterns, siblings) is decidable


@uses("filter_one_shard_0", "filter_one_shard_1")
def test_filter_matching_a_test_of_another_shard_passes(cells):
    runs = [cells[f"filter_one_shard_{i}"] for i in range(2)]
    assert [r.returncode for r in runs] == [0, 0], "\n".join(r.explain() for r in runs)
    assert [r.problems for r in runs] == [[], []]
    assert [sorted(r.tests) for r in runs] == [["test_more.py::test_epsilon"], []]


def listed_not_run(run) -> tuple[list[str], list[str], list[str], str]:
    """What a shard's outputs say the target collected that the shard has no record of (report.json,
    the file beside the digest, test.xml), and the --test_filter test.xml names."""
    beside = json.loads((run.tmp / "out" / outputs.COLLECTED_NAME).read_text())
    assert outputs.COLLECTED_NOT_RUN not in json.loads((run.tmp / "out" / outputs.DIGEST_NAME).read_text())["matrix"]  # kept out of it
    props = {p.get("name"): p.get("value") for p in run.xml.find("testsuite").findall("properties/property")}
    key = outputs.COLLECTED_NOT_RUN
    return run.report["matrix"][key], beside[key], json.loads(props[key]), props["test_filter"]


@uses(*SHARD_CELLS, *FILTERS, "filter_one_shard_0", "filter_one_shard_1")
def test_every_shard_names_the_collected_tests_it_did_not_run(cells):
    """A report's names of a target's tests must not hang on one shard's outputs: every shard lists,
    in report.json, beside the digest and in test.xml, what the target collected (before the filter and the
    shard split) that it has no record of: the other shards' tests and those the filter left out."""
    for name in SHARD_CELLS:
        run = cells[name]
        others = sorted(set(MANY) - set(run.tests))
        assert len(others) == len(MANY) - len(run.tests) > 0 and listed_not_run(run) == (others, others, others, ""), name
    for name, (pattern, selected) in FILTERS.items():
        left_out = sorted(set(MANY) - selected)
        assert set(cells[name].tests) == selected and listed_not_run(cells[name]) == (left_out, left_out, left_out, pattern), name
    epsilon = "test_more.py::test_epsilon"  # the filter's one test, run by shard 0: shard 1 lists all
    assert listed_not_run(cells["filter_one_shard_0"])[0] == sorted(set(MANY) - {epsilon})
    assert listed_not_run(cells["filter_one_shard_1"]) == (sorted(MANY), sorted(MANY), sorted(MANY), epsilon)


@uses("filter_crashed_file")
def test_filter_naming_a_file_that_crashed_at_import_matched_it(cells):
    run = cells["filter_crashed_file"]
    assert run.returncode == 1, run.explain()
    assert run.statuses == {"test_b_import_segfault.py": statuses.CRASHED}, run.explain()
    assert run.problems == []


@uses("import_faults_shard_0", "import_faults_shard_1")
def test_file_that_fails_to_import_is_reported_once_across_shards(cells):
    runs = [cells[f"import_faults_shard_{i}"] for i in range(2)]
    records = [n for run in runs for n in run.tests]
    assert sorted(records) == sorted({n for n in FAULTS if n.split("::")[0] in IMPORT_FAULT_FILES}), [r.explain() for r in runs]
    assert runs[0].statuses["test_b_import_segfault.py"] == statuses.CRASHED
    assert runs[0].statuses["test_c_import_error.py"] == statuses.ERROR
    assert [r.returncode for r in runs] == [1, 0] and [r.problems for r in runs] == [[], []]


# --- cells where no test can run ---------------------------------------------------------------


def _outputs_exist(run) -> None:
    assert sorted(p.name for p in (run.tmp / "out").iterdir()) == ["matrix_collected.json", "matrix_results.json", "report.json"], run.explain()
    assert run.xml is not None and junit_cases(run) == {}
    digest = json.loads((run.tmp / "out" / "matrix_results.json").read_text())
    assert digest["tests"] == [] and digest["matrix"]["problems"] == run.problems


@uses("bad_impl")
def test_unloadable_variant_writes_outputs_that_say_why(cells):
    run = cells["bad_impl"]
    assert run.returncode == 1, run.explain()
    _outputs_exist(run)
    assert run.problems == [
        "//syn:bad_impl: variant impl 'faults.no_such_module:Nope': cannot import 'faults.no_such_module': No module named 'faults.no_such_module' "
        "(is the module in the srcs of the variant's `library` in matrix.yaml?)"
    ]


@uses("crash_at_start")
def test_child_dying_before_any_test_writes_outputs_with_its_last_output(cells):
    run = cells["crash_at_start"]
    assert run.returncode == 1, run.explain()
    _outputs_exist(run)
    (problem,) = run.problems
    assert problem.startswith("pytest exited with SIGSEGV before running any test; its last output:\n"), problem
    assert "Fatal Python error: Segmentation fault" in problem and "crash_at_import.py" in problem, problem


# --- crashes, aborts, hangs --------------------------------------------------------------------


@uses("robust")
def test_crashes_and_collection_errors_do_not_lose_the_other_tests(cells):
    run = cells["robust"]
    assert run.returncode == 1, run.explain()
    assert run.statuses == ROBUST, run.explain()
    assert "SIGSEGV" in run.matrix("test_robust.py::test_3_segfault")["message"]
    assert "SIGABRT" in run.matrix("test_robust.py::test_5_abort")["message"]
    broken = run.matrix("test_robust_broken.py")
    assert broken["message"] == "ImportError: broken on purpose", broken  # the exception, not pytest's preamble with a sandbox path
    assert "broken on purpose" in broken["log_tail"]
    assert run.report["matrix"]["restarts"] == 3
    assert run.output.count("resuming with the remaining tests") == 3
    assert run.problems == []


@uses("robust")
def test_hang_is_a_timeout_and_the_rest_still_runs(cells):
    run = cells["robust"]
    hang = run.matrix("test_robust.py::test_7_hang")
    assert hang["status"] == statuses.TIMEOUT and hang["message"] == f"timed out after {ROBUST_TIMEOUT_S}s (per-test timeout)"
    assert run.matrix("test_robust.py::test_9_after")["status"] == statuses.PASSED
    # The log shows what the hung test printed and where it hung.
    log = run.output
    assert f"TIMEOUT: test_robust.py::test_7_hang ran longer than {ROBUST_TIMEOUT_S}s" in log, log[-6000:]
    assert "about to hang" in log and "in test_7_hang" in log[log.index("TIMEOUT: test_robust.py") :], log[-6000:]


@uses("faults")
def test_no_fault_loses_a_result(cells):
    """Segfault, abort, hang, os._exit(0), pytest.exit(), killpg of its own group, junk in the journal, a
    wiped temp dir, a file that segfaults at import, one that raises at import: every other test still reports,
    in report.json, matrix_results.json and test.xml alike."""
    run = cells["faults"]
    assert run.returncode == 1, run.explain()
    assert run.statuses == FAULTS, run.explain()
    digest = json.loads((run.tmp / "out" / "matrix_results.json").read_text())
    outputs_ids = {
        "report.json": set(run.tests),
        "matrix_results.json": {row[0] for row in digest["tests"]},
        "test.xml": set(junit_cases(run)),
    }
    lost = {name: sorted(set(FAULTS) - ids) for name, ids in outputs_ids.items()}
    assert lost == {name: [] for name in outputs_ids}, "lost results"
    assert all(len(ids) == len(FAULTS) for ids in outputs_ids.values())
    assert run.problems == [] and run.report["matrix"]["restarts"] == 8, run.explain()
    for nodeid, message in FAULT_MESSAGES.items():
        assert run.matrix(nodeid)["message"] == message, (nodeid, run.matrix(nodeid))
    for nodeid, needles in FAULT_TAILS.items():
        tail = run.matrix(nodeid)["log_tail"]
        assert all(needle in tail for needle in needles), (nodeid, needles, tail)
    ended = [n for n in FAULTS if run.matrix(n)["error_type"] in (statuses.CRASHED, statuses.TIMEOUT)]
    assert len(ended) == 8 and all(run.matrix(n)["log_tail"].strip() for n in ended), run.explain()  # never empty
    assert run.matrix("test_c_import_error.py")["message"] == "RuntimeError: this module is broken on purpose"
    assert "this module is broken on purpose" in run.matrix("test_c_import_error.py")["log_tail"]
    # The journal survived the junk: each malformed line was skipped with a warning.
    assert "[matrix] WARNING: journal line skipped (not a journal event): not json at all" in run.output, run.output[-6000:]


@uses("sigterm")
def test_bazel_sigterm_reaches_the_test_and_its_process_group(cells):
    """Bazel's SIGTERM to cell_main is passed on to the child's process group (the child runs in its
    own session): the hung test is `timeout` with where it hung, its grandchild is gone, and the
    results so far are written."""
    run = cells["sigterm"]
    assert run.returncode == 1, run.explain()
    assert run.statuses == {
        "test_sigterm.py::test_1_before": statuses.PASSED,
        "test_sigterm.py::test_2_bazel_ends_the_target": statuses.TIMEOUT,
        "test_sigterm.py::test_3_after": statuses.NOT_RUN,  # not lost: it says why it has no result
    }
    hung = run.matrix("test_sigterm.py::test_2_bazel_ends_the_target")
    assert hung["message"] == "Bazel ended the target during this test (the target's timeout, see `size`/--test_timeout)"
    assert "in test_2_bazel_ends_the_target" in hung["log_tail"], hung["log_tail"]
    assert run.matrix("test_sigterm.py::test_3_after")["message"] == "Bazel ended the target (SIGTERM) before this test ran"
    assert run.problems == [
        "Bazel ended the target (SIGTERM) before all its tests ran: the target's timeout is too short, or shard it; tests not yet run are not_run"
    ]
    sleeper = int((run.tmp / "tmpdir" / "sleeper.pid").read_text())
    assert _process_state(sleeper) in ("gone", "Z"), f"the test's grandchild {sleeper} still runs"
    assert run.wall_s < 30, run.explain()


def _process_state(pid: int) -> str:
    """'gone', 'Z' (dead, not yet reaped) or the live state letter of /proc/<pid>/stat."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@uses("sigkill")
def test_child_does_not_outlive_a_killed_cell_main(cells):
    run = cells["sigkill"]
    assert run.returncode == -9 and run.report is None, run.explain()  # nothing can write for a SIGKILLed process
    child = int((run.tmp / "tmpdir" / "child.pid").read_text())
    for _ in range(50):
        if _process_state(child) in ("gone", "Z"):
            break
        time.sleep(0.1)
    assert _process_state(child) in ("gone", "Z"), f"the pytest child {child} outlived cell_main"


@uses("faults")
def test_crash_listed_as_xfail_is_xfailed_and_says_what_happened(cells):
    run = cells["faults"]
    m = run.matrix(f"{F}::test_11_expected_crash")
    assert (m["status"], m["error_type"], m["expectation"]) == (statuses.XFAILED, statuses.CRASHED, f"{F}::test_11_expected_crash")
    case = junit_cases(run)[f"{F}::test_11_expected_crash"]
    assert case.find("skipped") is not None and case.find("error") is None


@uses("faults")
def test_big_output_is_cut_in_the_middle(cells):
    run = cells["faults"]
    stdout = run.tests["test_a_healthy.py::test_prints_10_mb"]["call"]["stdout"]
    assert stdout.startswith("HEAD-MARK xxx") and stdout.rstrip().endswith("xxx TAIL-MARK"), stdout[:200]
    assert re.search(r"\.\.\. \d+ bytes cut \.\.\.", stdout) and len(stdout) < 2 * outputs.OUTPUT_CAP + 200
    assert (run.tmp / "out" / "report.json").stat().st_size < 1_000_000


# --- outputs -----------------------------------------------------------------------------------


@uses("robust")
def test_report_json_has_every_test_with_matrix_metadata(cells):
    run = cells["robust"]
    assert sorted(run.tests) == sorted(ROBUST)
    keys = {"status", "duration_s", "message", "error_type", "transform_failed", "transform_s", "transform_calls", "expectation"}
    for nodeid, test in run.tests.items():
        m = test["metadata"]["matrix"]
        assert keys <= set(m), (nodeid, m)
        assert m["status"] == ROBUST[nodeid] and m["transform_failed"] is False and m["transform_s"] == 0.0
        assert isinstance(m["duration_s"], float) and m["duration_s"] >= 0
        assert (m["message"] == "") == (m["status"] == statuses.PASSED), (nodeid, m)
    failed = run.matrix("test_robust.py::test_2_fails")
    assert failed["error_type"] == "AssertionError" and "arithmetic is broken" in failed["message"]
    error = run.matrix("test_robust.py::test_8_setup_error")
    assert error["error_type"] == "RuntimeError" and "the fixture broke" in error["message"]
    assert "not today" in run.matrix("test_robust.py::test_6_skipped")["message"]
    assert run.matrix("test_robust.py::test_1_before")["error_type"] is None
    top = run.report["matrix"]
    assert {k: top[k] for k in ("suite", "variant", "device", "target", "shard_index", "total_shards", "test_filter")} == {
        "suite": "syn", "variant": "base", "device": "cpu", "target": ROBUST_TARGET,
        "shard_index": 0, "total_shards": 1, "test_filter": "",
    }  # fmt: skip
    assert top["torch_version"] == importlib.metadata.version("torch")
    assert top["python"] == platform.python_version()
    assert top["transform_s"] == 0.0  # base transforms nothing
    assert run.report["exitcode"] == 1
    summary = run.report["summary"]
    assert summary["total"] == summary["collected"] == len(ROBUST)
    assert {k: summary[k] for k in Counter(ROBUST.values())} == dict(Counter(ROBUST.values()))


@uses("robust")
def test_junit_xml_has_one_testcase_per_test(cells):
    run = cells["robust"]
    (suite,) = run.xml.findall("testsuite")
    cases = junit_cases(run)
    assert len(suite.findall("testcase")) == len(cases) == len(ROBUST) and set(cases) == set(ROBUST)
    element = {statuses.PASSED: None, statuses.FAILED: "failure", statuses.SKIPPED: "skipped",
               statuses.CRASHED: "error", statuses.TIMEOUT: "error", statuses.ERROR: "error"}  # fmt: skip
    for nodeid, status in ROBUST.items():
        children = {child.tag for child in cases[nodeid]} - {"properties"}
        assert children == ({element[status]} if element[status] else set()), (nodeid, children)
        # every field the runtime wrote into report.json is a property, and reads back as it was written
        props = {p.get("name"): outputs.from_junit_property(p.get("name"), p.get("value")) for p in cases[nodeid].find("properties")}
        written = next(t["metadata"]["matrix"] for t in run.report["tests"] if t["nodeid"] == nodeid)
        assert props == {"nodeid": nodeid, **{k: v for k, v in written.items() if k in RUNTIME_FIELDS and v is not None}}
        assert props["status"] == status
    assert "arithmetic is broken" in cases["test_robust.py::test_2_fails"].find("failure").text
    assert "SIGSEGV" in cases["test_robust.py::test_3_segfault"].find("error").get("message")
    assert "broken on purpose" in cases["test_robust_broken.py"].find("error").text
    assert cases["test_robust.py::test_7_hang"].find("error").get("type") == statuses.TIMEOUT
    counts = Counter(element[status] for status in ROBUST.values())
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": str(len(ROBUST)), "failures": str(counts["failure"]), "errors": str(counts["error"]), "skipped": str(counts["skipped"]),
    }  # fmt: skip
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["target"] == ROBUST_TARGET and props["variant"] == "base" and props["torch_version"] == importlib.metadata.version("torch")


@uses("robust", "expect_ok")
def test_premature_exit_file_removed_and_files_only_under_test_tmpdir(cells):
    for name in ("robust", "expect_ok"):
        run = cells[name]
        assert not (run.tmp / "premature_exit").exists(), f"{name}: TEST_PREMATURE_EXIT_FILE left behind"
        assert sorted(p.name for p in run.tmp.iterdir()) == ["log.txt", "out", "test.xml", "tmpdir"], name
        assert sorted(p.name for p in (run.tmp / "out").iterdir()) == ["matrix_collected.json", "matrix_results.json", "report.json"]
        assert any(p.name.startswith("cell-") for p in (run.tmp / "tmpdir").iterdir())
    # test_environment checked, inside the cell, that the marker existed and tempfile used TEST_TMPDIR.
    assert cells["expect_ok"].statuses[ENVIRONMENT] == statuses.PASSED
    assert cells.files() == cells.source_files, "the cells wrote next to the suites (bytecode, caches, core files?)"


# --- devices -----------------------------------------------------------------------------------


@uses("cuda")
def test_unavailable_device_fails_at_start(cells):
    run = cells["cuda"]
    assert run.returncode != 0, run.explain()
    assert run.tests == {}  # nothing ran, nothing was skipped
    (problem,) = run.problems
    assert "device 'cuda' is not available on this machine" in problem
    assert run.output.count("[matrix] ERROR") == 1
    assert f"[matrix] ERROR: {problem}" in run.output
    assert "(base, cuda, shard 1/1): no tests" in run.output


@uses("rocm")
def test_a_requires_gpu_device_not_named_cuda_fails_at_start(cells):
    run = cells["rocm"]
    assert run.returncode != 0, run.explain()
    assert run.tests == {}
    assert run.problems == [
        "device 'rocm' is not available on this machine (torch.device('rocm') is not a device type this torch knows); "
        "run GPU targets on a machine with a GPU (bazel test --config=gpu there), or leave them out "
        "(they are excluded by default)"
    ]
    assert run.output.count("[matrix] ERROR") == 1


@uses("cuda_sim")
def test_a_device_without_requires_gpu_is_not_checked_for_a_gpu(cells):
    run = cells["cuda_sim"]
    assert run.problems == [], run.explain()
    assert run.returncode == 0, run.explain()
    assert len(run.tests) > 1 and set(run.statuses.values()) == {statuses.PASSED}
