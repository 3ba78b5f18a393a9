"""What a test does inside its own process cannot reach the runner's channel or its clocks
(DESIGN.md, "Trust rules"), through cell_main on the hostile suites of fixtures/reach:

- hangs: a test that holds the GIL in C, in the regex engine, in a busy loop or in another thread,
  or keeps signals out, ends at test_timeout_s by cell_main's clock, and the rest runs;
- the channel: a test that closes or replaces descriptors, patches json/os/time/threading/signal,
  replaces the environment or the standard streams keeps its true status, and so does every other;
  one that destroys the outputs directory is `error` alone, saying what it did;
- memory: a test that prints 300 MiB (stdout, the stderr descriptor, logging, pytest's sys capture,
  no capture) or fails with a 16 MiB message leaves a report of bounded size, and no process of the
  cell holds more than MEMORY_BOUND_KIB;
- a cell that collects no test is its own outcome: the target fails, saying why.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

import pytest

from tools.matrix import statuses
from tools.matrix.runtime import outputs
from tools.matrix.runtime.cell_config import CellConfig
from tools.matrix.runtime.progress import BETWEEN_TESTS_S as RUNTIME_BETWEEN_TESTS_S
from tools.matrix.runtime.progress import Progress
from tools.matrix.tests.fixtures.cellrun import BASE_IMPL, Cell, pool_fixture, uses
from tools.matrix.tests.fixtures.reach.expected import BETWEEN_TESTS_S, EMPTY, MEMORY_TIMEOUT_S, PROBLEMS, RECORDS, TIMEOUT_S

HANGS = "test_hangs.py"
# Where the stacks cell_main asks for can be printed (the signal is neither blocked nor ignored),
# the record's log_tail names the hung function.
HANG_STACKS = {
    f"{HANGS}::test_04_catastrophic_regex": "in test_04_catastrophic_regex",
    f"{HANGS}::test_06_busy_loop_with_a_huge_switch_interval": "in _spin",
    f"{HANGS}::test_08_another_thread_hogs_the_gil": "in _spin",
}
MEMORY = "test_memory.py"
MEMORY_MIB = 300
# 2 x 300 MiB went through each cell (stdout and the stderr descriptor), and 300 MiB of logging: its
# largest process (the pytest child: Python, pytest and torch take ~330 MiB) stays under this.
# Before the bounds, cell_main reached 3.0 GiB and the child 2.0 GiB.
MEMORY_BOUND_KIB = 1024 * 1024
# pytest's capture modes a suite may choose (matrix.yaml pytest_args): fd (the default), sys, tee-sys, no.
MEMORY_CELLS = {"memory_fd": (), "memory_sys": ("--capture=sys",), "memory_tee_sys": ("--capture=tee-sys",), "memory_no_capture": ("-s",)}


def test_the_expected_records_use_the_runtimes_own_limit():
    assert BETWEEN_TESTS_S == RUNTIME_BETWEEN_TESTS_S


def _records(run) -> dict[str, tuple[str, str]]:
    """node id -> (status, message) of a run, each message cut to the length of the expected one's start."""
    expected = RECORDS[run.cell.suite_dir.removeprefix("reach/")]
    return {
        nodeid: (m["status"], m["message"][: len(expected[nodeid][1])] if nodeid in expected else m["message"])
        for nodeid, m in ((n, run.matrix(n)) for n in run.tests)
    }


def _memory_cell(pytest_args: tuple[str, ...]) -> Cell:
    return Cell(
        "reach/memory",
        (MEMORY,),
        test_timeout_s=MEMORY_TIMEOUT_S,
        env={"REACH_MEMORY_MIB": str(MEMORY_MIB)},
        measure_rss=True,
        pytest_args=pytest_args,
    )


# Heaviest first: the hangs restart their child six times, the memory cells write 600 MiB each.
CELLS: dict[str, Cell] = {
    "hangs": Cell("reach/hangs", (HANGS,), test_timeout_s=TIMEOUT_S),
    **{name: _memory_cell(args) for name, args in MEMORY_CELLS.items()},
    "hang_import": Cell("reach/hang_import", ("test_a_import_hangs.py", "test_b_after.py"), test_timeout_s=TIMEOUT_S),
    "hang_exit": Cell("reach/hang_exit", ("test_exit_hangs.py",), test_timeout_s=TIMEOUT_S),
    "channel": Cell("reach/channel", ("test_channel.py",)),
    "outputs": Cell("reach/outputs", ("test_outputs_dir.py",)),
    "empty": Cell("reach/empty", ("test_nothing_here.py",)),
    "empty_patterns": Cell("reach/empty_patterns", ("test_checks.py",)),
}

cells = pool_fixture(CELLS, "reach")


# --- hangs: the per-test timeout is enforced from outside the test's process --------------------


@uses("hangs")
def test_a_hang_that_holds_the_gil_or_keeps_signals_out_ends_at_the_timeout(cells):
    run = cells["hangs"]
    assert _records(run) == RECORDS["hangs"], run.explain()
    for nodeid, (status, _message) in RECORDS["hangs"].items():
        if status == statuses.TIMEOUT:
            m = run.matrix(nodeid)
            assert m["error_type"] == statuses.TIMEOUT and m["message"] == f"timed out after {TIMEOUT_S}s (per-test timeout)", (nodeid, m)
            assert f"TIMEOUT: {nodeid} ran longer than {TIMEOUT_S}s" in m["log_tail"], (nodeid, m["log_tail"])
    for nodeid, frame in HANG_STACKS.items():
        assert frame in run.matrix(nodeid)["log_tail"], (nodeid, run.matrix(nodeid)["log_tail"])
    assert run.problems == [] and run.report["matrix"]["restarts"] == 6, run.explain()
    assert run.returncode == 1


@uses("hang_import")
def test_a_file_whose_import_hangs_holding_the_gil_times_out_and_the_other_files_run(cells):
    run = cells["hang_import"]
    assert _records(run) == RECORDS["hang_import"], run.explain()
    m = run.matrix("test_a_import_hangs.py")
    assert m["message"] == f"timed out after {TIMEOUT_S}s (per-test timeout) while this file was being imported", m
    assert f"TIMEOUT: test_a_import_hangs.py ran longer than {TIMEOUT_S}s" in m["log_tail"], m["log_tail"]
    assert run.problems == [] and run.returncode == 1, run.explain()


@uses("hang_exit")
def test_a_process_that_cannot_exit_after_its_last_test_keeps_every_result_and_fails_the_target(cells):
    run = cells["hang_exit"]
    assert _records(run) == RECORDS["hang_exit"], run.explain()
    assert run.problems == PROBLEMS["hang_exit"], run.explain()
    assert run.returncode == 1


def _stalled(events: list[dict[str, Any]], timeout_s: float = 5) -> tuple[dict[str, Any], list[str]]:
    """(records, problems) cell_main's clock gives a child stopped after `events` (in-process: which
    span a stall lands in depends on when a stray thread takes the GIL, so no real test can pin it)."""
    cell = CellConfig(suite="syn", suite_dir=".", variant="base", variant_impl=BASE_IMPL, device="cpu", test_timeout_s=timeout_s)
    tests: dict[str, Any] = {}
    problems: list[str] = []
    progress = Progress(cell, tests, {}, {}, problems)
    for event in events:
        progress.take(event)
    progress.overran = progress.span
    progress.record_overrun("the child's last output")
    return {n: (t["metadata"]["matrix"]["status"], t["metadata"]["matrix"]["message"]) for n, t in tests.items()}, problems


def test_a_stall_is_blamed_on_the_test_whose_span_it_is_in():
    start, stop = {"event": "start", "nodeid": "t.py::test_a"}, {"event": "stop", "nodeid": "t.py::test_a"}
    result = {"event": "result", "test": {"nodeid": "t.py::test_a", "metadata": {"matrix": {"status": "passed", "message": ""}}}}
    assert _stalled([start]) == ({"t.py::test_a": ("timeout", "timed out after 5s (per-test timeout)")}, [])
    # Its teardown is over, its result never came: a thread it left holds the process.
    assert _stalled([start, stop]) == (
        {"t.py::test_a": ("timeout", f"timed out after the test ended: its result was not recorded within {BETWEEN_TESTS_S}s (a thread or handler it left running?)")},
        [],
    )  # fmt: skip
    # Its result is in: it keeps it; the target fails with a problem line.
    assert _stalled([start, stop, result]) == (
        {"t.py::test_a": ("passed", "")},
        [f"the test process stopped responding for {BETWEEN_TESTS_S}s after t.py::test_a ended (a thread, signal handler or atexit handler left running?); it was killed"],
    )  # fmt: skip
    assert _stalled([{"event": "collecting", "nodeid": "t.py"}]) == (
        {"t.py": ("timeout", "timed out after 5s (per-test timeout) while this file was being imported")}, []
    )  # fmt: skip
    assert _stalled([{"event": "collecting", "nodeid": "t.py"}, {"event": "collected", "nodeid": "t.py", "nodeids": []}], timeout_s=60)[1] == [
        "the test process stopped responding for 60s after the test files were collected (a thread, signal handler or atexit handler left running?); it was killed"
    ]


# --- the channel: what cell_main relies on is out of the test's reach ------------------------------


@uses("channel")
def test_a_test_that_breaks_descriptors_the_stdlib_or_the_environment_keeps_its_true_status(cells):
    run = cells["channel"]
    assert _records(run) == RECORDS["channel"], run.explain()
    assert run.problems == [] and run.report["matrix"]["restarts"] == 0 and run.returncode == 0, run.explain()
    # The capture the closed descriptors belonged to works again for the next test.
    assert run.tests["test_channel.py::test_05_ok"]["call"]["stdout"] == "captured as usual\n"


@uses("outputs")
def test_a_test_that_destroys_the_outputs_directory_alone_is_error_and_the_outputs_are_written(cells):
    run = cells["outputs"]
    assert {n: (m["status"], m["message"]) for n, m in ((n, run.matrix(n)) for n in run.tests)} == RECORDS["outputs"], run.explain()
    out = run.tmp / "out"
    assert stat.S_ISDIR(os.lstat(out).st_mode) and os.lstat(out).st_mode & stat.S_IRWXU == stat.S_IRWXU
    assert sorted(p.name for p in out.iterdir()) == ["matrix_collected.json", "matrix_results.json", "report.json"]
    assert run.problems == [] and run.returncode == 1


# --- memory: bounded whatever the tests print or keep ---------------------------------------------


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@uses(*MEMORY_CELLS)
@pytest.mark.parametrize("name", MEMORY_CELLS)
def test_300_mib_of_output_leaves_bounded_memory_and_a_bounded_report(cells, name):
    run = cells[name]
    assert _records(run) == RECORDS["memory"] and run.problems == [], run.explain()
    assert run.peak_rss_kib is not None and run.peak_rss_kib < MEMORY_BOUND_KIB, f"{name}: peak RSS {run.peak_rss_kib} KiB\n{run.explain()}"
    longest = max(len(s) for s in _strings(run.report))
    assert longest <= outputs.OUTPUT_CAP + 100, f"{name}: a string of {longest} characters in report.json"
    assert (run.tmp / "out" / "report.json").stat().st_size < 2_000_000
    failed = run.matrix(f"{MEMORY}::test_3_fails_with_a_huge_message")
    assert failed["message"].startswith("AssertionError: HUGE-HEAD yyy") and len(failed["message"]) <= 500, failed["message"][:100]
    if name in ("memory_fd", "memory_sys", "memory_tee_sys"):  # captured: the head and the tail of what it printed
        stdout = run.tests[f"{MEMORY}::test_1_prints_to_stdout_and_the_stderr_descriptor"]["call"]["stdout"]
        assert stdout.startswith("OUT-HEAD xxx") and stdout.endswith("xxx\nOUT-TAIL\n") and " bytes cut ..." in stdout, (
            stdout[:80],
            stdout[-80:],
        )
    if name == "memory_fd":  # the descriptor's output too
        stderr = run.tests[f"{MEMORY}::test_1_prints_to_stdout_and_the_stderr_descriptor"]["call"]["stderr"]
        assert stderr.startswith("ERR-HEAD xxx") and stderr.endswith("xxx\nERR-TAIL\n") and " bytes cut ..." in stderr, (
            stderr[:80],
            stderr[-80:],
        )


# --- no tests collected ---------------------------------------------------------------------------


@uses("empty", "empty_patterns")
@pytest.mark.parametrize(("name", "file"), [("empty", "test_nothing_here.py"), ("empty_patterns", "test_checks.py")])
def test_a_cell_that_collects_no_test_fails_saying_why(cells, name, file):
    run = cells[name]
    assert run.statuses == {file: statuses.ERROR}, run.explain()
    assert run.matrix(file)["message"] == EMPTY, run.matrix(file)
    assert run.problems == [] and run.returncode == 1
    digest = json.loads((run.tmp / "out" / "matrix_results.json").read_text())
    assert [row[0] for row in digest["tests"]] == [file]
