"""known_tests.py: which record each known test gets (this run's, the previous report's, or one that
says why there is none), through collect() on testlogs written by the runtime's own writers. The
real-Bazel cases are in the names drill (tools/matrix/drill/names_drill.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tools.matrix import config, statuses
from tools.matrix.collect import collect
from tools.matrix.known_tests import NO_RESULTS, NOT_COLLECTED, NOT_RERUN, NOT_RUN
from tools.matrix.records import Record
from tools.matrix.report.summary import carried_over
from tools.matrix.runtime import outputs
from tools.matrix.tests.fixtures.toolws import write_workspace

MATRIX = """\
devices:
  cpu: {}
variants:
  base: {impl: pkg.mod:Base, description: plain}
  other: {impl: pkg.mod:Other, description: other}
suites:
  s:
    variants: [base, other]
    devices: [cpu]
    shards: 2
  f:
    granularity: file
    variants: [base]
    devices: [cpu]
"""
A, B, C, D = "test_a.py::test_one", "test_a.py::test_two", "test_b.py::test_three", "test_b.py::test_four"
S_TESTS = (A, B, C, D)
P, F, N = statuses.PASSED, statuses.FAILED, statuses.NOT_RUN
RUN = "run-2"


@pytest.fixture
def matrix(tmp_path) -> config.Matrix:
    ws = write_workspace(tmp_path / "ws", MATRIX, ("s/test_a.py", "s/test_b.py", "f/test_a.py", "f/test_b.py"))
    return config.load(ws / "matrix.yaml", ws)


def write_shard(d: Path, target: str, results: dict[str, str], test_filter: str | None = "", not_run_here: tuple[str, ...] | None = (),
                shard: int = 0, total: int = 1) -> None:  # fmt: skip
    """What cell_main writes for one shard (its own writers): report.json + digest unzipped, test.xml.
    not_run_here None: an older runtime's outputs, which do not list what the shard did not run (and
    test_filter None: nor, in test.xml, its filter)."""
    tests = [{"nodeid": t, "outcome": s, "metadata": {"matrix": {"status": s, "duration_s": 0.5, "message": f"{t} {s}", "error_type": None,
              "transform_failed": False, "transform_s": 0.0, "transform_calls": 0, "expectation": None}}} for t, s in results.items()]  # fmt: skip
    suite, name = target.removeprefix("//").split(":")
    meta = {"suite": suite, "variant": name.split("_")[1], "device": "cpu", "target": target, "shard_index": shard, "total_shards": total,
            "test_filter": test_filter, "torch_version": "2.13.0+cpu", "problems": []}  # fmt: skip
    if not_run_here is not None:
        meta[outputs.COLLECTED_NOT_RUN] = sorted(not_run_here)
    shutil.rmtree(d, ignore_errors=True)  # Bazel clears a shard's outputs before it runs again
    (d / "test.outputs").mkdir(parents=True)
    outputs.write_outputs(str(d / "test.outputs"), tests, meta, time.time(), 0, suite)
    (d / "test.xml").write_bytes(outputs.junit_xml(tests, meta))


def rec(suite: str, variant: str, test: str, status: str, run_id: str = "run-1", message: str = "") -> Record:
    return Record(suite=suite, test=test, variant=variant, device="cpu", status=status, message=message or f"{test} {status} earlier",
                  target=f"//{suite}:{suite}_{variant}_cpu", run_id=run_id)  # fmt: skip


def records_of(collected, suite: str = "s", variant: str = "base") -> dict[str, tuple[str, str, str]]:
    """test -> (status, run_id, message) of one cell."""
    return {r.test: (r.status, r.run_id, r.message) for r in collected.records if (r.suite, r.variant) == (suite, variant)}


def s_base(logs: Path) -> Path:
    return logs / "s" / "s_base_cpu"


def filtered_run(logs: Path, selected: dict[str, str], pattern: str) -> None:
    """s_base_cpu ran with --test_filter=`pattern`: round-robin shards of what it selected."""
    chosen = sorted(selected)
    for k in range(2):
        mine = {t: selected[t] for t in chosen[k::2]}
        write_shard(s_base(logs) / f"shard_{k + 1}_of_2", "//s:s_base_cpu", mine, pattern, tuple(set(S_TESTS) - set(mine)), k, 2)


def test_a_fresh_result_replaces_the_previous_one_and_what_the_filter_left_out_keeps_its_record(matrix, tmp_path):
    logs = tmp_path / "logs"
    filtered_run(logs, {A: P}, "test_one")
    previous = [rec("s", "base", A, F), rec("s", "base", B, F), rec("s", "base", C, P), rec("s", "base", D, P, run_id="run-0")]
    got = records_of(collect(matrix, logs, run_id=RUN, previous=previous))
    assert got == {
        A: (P, RUN, f"{A} {P}"),
        B: (F, "run-1", f"{B} {F} earlier"),  # carried over, and still a failure
        C: (P, "run-1", f"{C} {P} earlier"),
        D: (P, "run-0", f"{D} {P} earlier"),  # an earlier carry keeps the run that produced it
    }


def test_without_a_previous_report_what_the_filter_left_out_is_not_run_saying_why(matrix, tmp_path):
    logs = tmp_path / "logs"
    filtered_run(logs, {A: P, C: F}, "test_one,test_th*")
    why = f"deselected by --test_filter 'test_one,test_th*' in run {RUN}"
    assert records_of(collect(matrix, logs, run_id=RUN)) == {A: (P, RUN, f"{A} {P}"), C: (F, RUN, f"{C} {F}"), B: (N, RUN, why), D: (N, RUN, why)}
    # The other cell of the suite never ran: every test the suite knows is not_run there.
    assert records_of(collect(matrix, logs, run_id=RUN), variant="other") == {t: (N, RUN, NOT_RUN) for t in S_TESTS}


def test_a_previous_not_run_record_is_no_result_and_is_never_carried_over(matrix, tmp_path):
    logs = tmp_path / "logs"
    filtered_run(logs, {A: P}, "test_one")
    previous = [rec("s", "base", B, N, message="an old reason"), rec("s", "base", NO_RESULTS, statuses.CRASHED)]
    got = records_of(collect(matrix, logs, run_id=RUN, previous=previous))
    assert got[B] == (N, RUN, f"deselected by --test_filter 'test_one' in run {RUN}")
    assert NO_RESULTS not in got


def test_a_test_the_run_tried_in_a_broken_shard_is_this_runs_error_naming_its_last_result(matrix, tmp_path):
    """Shard 2 of a filtered run left a truncated outputs dir and no test.xml; shard 1's list names its tests."""
    logs = tmp_path / "logs"
    filtered_run(logs, {A: P, B: P, C: P}, "test_a.py,test_three")  # shard 1: A, C; shard 2: B
    broken = s_base(logs) / "shard_2_of_2"
    (broken / "test.xml").unlink()
    for name in (outputs.DIGEST_NAME, outputs.REPORT_NAME):
        (broken / "test.outputs" / name).write_text("{")
    previous = [rec("s", "base", t, P) for t in S_TESTS]
    got = records_of(collect(matrix, logs, run_id=RUN, previous=previous))
    unusable = "unusable test outputs: s/s_base_cpu/shard_2_of_2/test.outputs/matrix_results.json: invalid JSON"
    assert got[B][:2] == (statuses.ERROR, RUN) and got[B][2].startswith(unusable) and got[B][2].endswith("; its last result: passed in run run-1")
    assert got[D] == (P, "run-1", f"{D} {P} earlier")  # the filter left it out: not this run's to lose
    assert (got[A][:2], got[C][:2]) == ((P, RUN), (P, RUN))


def test_a_target_that_collected_everything_proves_a_missing_test_gone(matrix, tmp_path):
    """Every shard read, each listing what it did not run: a previous record of a test the target no
    longer collects is dropped (noted), even after a filtered run; a test another cell still
    collects is not_run here, saying so."""
    logs = tmp_path / "logs"
    filtered_run(logs, {A: P}, "test_one")  # collected A..D
    write_shard(logs / "s" / "s_other_cpu" / "shard_1_of_2", "//s:s_other_cpu", {"test_a.py::test_new": P}, "", (), 0, 2)
    write_shard(logs / "s" / "s_other_cpu" / "shard_2_of_2", "//s:s_other_cpu", {}, "", ("test_a.py::test_new",), 1, 2)
    previous = [rec("s", "base", "test_a.py::test_deleted", F), rec("s", "other", A, F)]
    collected = collect(matrix, logs, run_id=RUN, previous=previous)
    why = f"deselected by --test_filter 'test_one' in run {RUN}"
    assert records_of(collected) == {A: (P, RUN, f"{A} {P}"), B: (N, RUN, why), C: (N, RUN, why), D: (N, RUN, why), "test_a.py::test_new": (N, RUN, NOT_COLLECTED)}
    assert records_of(collected, variant="other") == {"test_a.py::test_new": (P, RUN, f"test_a.py::test_new {P}"), **{t: (N, RUN, NOT_COLLECTED) for t in S_TESTS}}
    assert collected.notes == ["dropped 2 record(s) of tests their target no longer collects: s test_a.py::test_deleted (1), s test_a.py::test_one (1)"]


def test_the_tests_of_a_file_that_failed_to_import_get_its_status(matrix, tmp_path):
    """test_b.py failed to import in this run: its tests were not collected, yet they are not gone."""
    logs = tmp_path / "logs"
    write_shard(s_base(logs) / "shard_1_of_2", "//s:s_base_cpu", {A: P, "test_b.py": statuses.ERROR}, "", (B,), 0, 2)
    write_shard(s_base(logs) / "shard_2_of_2", "//s:s_base_cpu", {B: P}, "", (A,), 1, 2)
    previous = [rec("s", "base", C, P), rec("s", "base", D, F)]
    got = records_of(collect(matrix, logs, run_id=RUN, previous=previous))
    why = f"its file could not be imported in run {RUN}: test_b.py error"
    assert got == {A: (P, RUN, f"{A} {P}"), B: (P, RUN, f"{B} {P}"), "test_b.py": (statuses.ERROR, RUN, "test_b.py error"),
                   C: (statuses.ERROR, RUN, why), D: (statuses.ERROR, RUN, why)}  # fmt: skip


def test_an_older_runtimes_filtered_outputs_prove_nothing_gone(matrix, tmp_path):
    """Outputs that do not list what they did not run (an older runtime, a cached result): after a
    filtered run the previous records stay; after an unfiltered one the shards' records are the whole set."""
    logs = tmp_path / "logs"
    for k, mine in enumerate(({A: P}, {})):
        write_shard(s_base(logs) / f"shard_{k + 1}_of_2", "//s:s_base_cpu", mine, "test_one", None, k, 2)
    previous = [rec("s", "base", t, F) for t in (A, B, "test_a.py::test_deleted")]
    got = records_of(collect(matrix, logs, run_id=RUN, previous=previous))
    assert got == {A: (P, RUN, f"{A} {P}"), B: (F, "run-1", f"{B} {F} earlier"), "test_a.py::test_deleted": (F, "run-1", f"test_a.py::test_deleted {F} earlier")}
    for k, mine in enumerate(({A: P}, {B: P})):  # the same target run again, unfiltered
        write_shard(s_base(logs) / f"shard_{k + 1}_of_2", "//s:s_base_cpu", mine, "", None, k, 2)
    assert records_of(collect(matrix, logs, run_id=RUN, previous=previous)) == {A: (P, RUN, f"{A} {P}"), B: (P, RUN, f"{B} {P}")}


def test_a_corrupt_list_beside_the_digest_is_a_problem_and_proves_nothing_gone(matrix, tmp_path):
    logs = tmp_path / "logs"
    filtered_run(logs, {A: P, C: P}, "test_one,test_three")
    (s_base(logs) / "shard_2_of_2" / "test.outputs" / outputs.COLLECTED_NAME).write_text('{"collected_not_run": [1]}')
    previous = [rec("s", "base", "test_a.py::test_deleted", F)]
    collected = collect(matrix, logs, run_id=RUN, previous=previous)
    why = f"deselected by --test_filter 'test_one,test_three' in run {RUN}"
    assert records_of(collected) == {A: (P, RUN, f"{A} {P}"), C: (P, RUN, f"{C} {P}"), B: (N, RUN, why), D: (N, RUN, why),
                                     "test_a.py::test_deleted": (F, "run-1", f"test_a.py::test_deleted {F} earlier")}  # fmt: skip
    assert collected.problems == [
        f"//s:s_base_cpu: shard 2: s/s_base_cpu/shard_2_of_2/test.outputs/{outputs.COLLECTED_NAME}: collected_not_run is [1], "
        "not a list of test ids; its list of the tests it did not run is not used"
    ]


def test_records_of_a_removed_file_or_cell_are_dropped_and_noted(matrix, tmp_path):
    previous = [rec("s", "base", "test_gone.py::test_x", F), rec("s", "base", A, P), rec("s", "retired", A, F), rec("s", "retired", B, F),
                rec("gone_suite", "base", A, F)]  # fmt: skip
    collected = collect(matrix, tmp_path / "logs", run_id=RUN, previous=previous)
    assert {(r.suite, r.variant, r.test) for r in collected.records if r.run_id != RUN} == {("s", "base", A)}
    assert collected.notes == [
        "dropped 3 record(s) of cells no longer in matrix.yaml: //gone_suite:gone_suite_base_cpu (1), //s:s_retired_cpu (2)",
        "dropped 1 record(s) of test files no longer in their suite: s test_gone.py (1)",
    ]


def test_a_rerun_keeps_every_record_of_the_targets_it_did_not_run_and_names_new_ones(matrix, tmp_path):
    """collect(labels=...) reads only the rerun's targets: the others keep the previous report's records
    as they are (a not_run one too: nothing was read); what the last report lacks is NOT_RERUN."""
    logs = tmp_path / "logs"
    write_shard(logs / "f" / "f_base_cpu" / "test_a", "//f:f_base_cpu/test_a", {A: P}, "test_one", (B,))
    write_shard(logs / "f" / "f_base_cpu" / "test_b", "//f:f_base_cpu/test_b", {C: F, D: F})  # old testlogs: not to be re-stamped
    previous = [rec("f", "base", t, s, run_id="run-1") for t, s in ((A, F), (B, P), (C, P))] + [rec("s", "base", A, F)]
    collected = collect(matrix, logs, run_id=RUN, labels={"//f:f_base_cpu/test_a"}, previous=previous)
    # test_b's target was not read: C keeps its record, D (only in its old testlogs) is not known at all.
    assert records_of(collected, "f") == {A: (P, RUN, f"{A} {P}"), B: (P, "run-1", f"{B} {P} earlier"), C: (P, "run-1", f"{C} {P} earlier")}
    assert records_of(collected) == {A: (F, "run-1", f"{A} {F} earlier")}
    assert records_of(collected, variant="other") == {A: (N, RUN, NOT_RERUN)}


def test_names_come_from_test_xml_when_the_outputs_are_gone(matrix, tmp_path):
    """outputs.zip deleted: test.xml carries the results, the filter and what the shard did not run."""
    logs = tmp_path / "logs"
    d = logs / "f" / "f_base_cpu" / "test_a"
    write_shard(d, "//f:f_base_cpu/test_a", {A: F}, "test_one", (B,))
    for name in (outputs.DIGEST_NAME, outputs.REPORT_NAME):
        (d / "test.outputs" / name).unlink()
    collected = collect(matrix, logs, run_id=RUN)
    assert records_of(collected, "f") == {A: (F, RUN, f"{A} {F}"), B: (N, RUN, f"deselected by --test_filter 'test_one' in run {RUN}")}
    assert collected.problems == []
    # An older runtime's test.xml names neither: the filter is unknown, nothing is proven gone or deselected.
    write_shard(d, "//f:f_base_cpu/test_a", {A: F}, None, None)
    (d / "test.outputs" / outputs.DIGEST_NAME).unlink()
    (d / "test.outputs" / outputs.REPORT_NAME).unlink()
    previous = [rec("f", "base", B, P), rec("f", "base", "test_a.py::test_deleted", P)]
    assert records_of(collect(matrix, logs, run_id=RUN, previous=previous), "f") == {
        A: (F, RUN, f"{A} {F}"), B: (P, "run-1", f"{B} {P} earlier"), "test_a.py::test_deleted": (P, "run-1", f"test_a.py::test_deleted {P} earlier"),
    }  # fmt: skip


def test_the_carried_over_sentence_counts_per_run_and_the_failures():
    run = [rec("s", "base", A, P, run_id=RUN)]
    assert carried_over(run, RUN) == ""
    earlier = [rec("s", "base", B, F), rec("s", "base", C, P), rec("s", "base", D, statuses.CRASHED, run_id="run-0")]
    assert carried_over(run + earlier, RUN) == (
        "Carried over: 3 record(s) from earlier runs (run run-0: 1, run run-1: 2), kept because this run's outputs have no result "
        "for their tests (a --test_filter, a rerun of other targets); 2 of them failing, which still count."
    )
