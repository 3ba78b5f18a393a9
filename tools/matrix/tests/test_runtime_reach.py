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
from tools.matrix.runtime.cell_main import BETWEEN_TESTS_S
from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses

TIMEOUT_S = 3
HANGS = "test_hangs.py"
HANG_STATUSES = {
    f"{HANGS}::test_01_ok": statuses.PASSED,
    f"{HANGS}::test_02_c_sleep_holding_the_gil": statuses.TIMEOUT,
    f"{HANGS}::test_03_ok": statuses.PASSED,
    f"{HANGS}::test_04_catastrophic_regex": statuses.TIMEOUT,
    f"{HANGS}::test_05_ok": statuses.PASSED,
    f"{HANGS}::test_06_busy_loop_with_a_huge_switch_interval": statuses.TIMEOUT,
    f"{HANGS}::test_07_ok": statuses.PASSED,
    f"{HANGS}::test_08_another_thread_hogs_the_gil": statuses.TIMEOUT,
    f"{HANGS}::test_09_ok": statuses.PASSED,
    f"{HANGS}::test_10_sigterm_ignored_then_pause": statuses.TIMEOUT,
    f"{HANGS}::test_11_ok": statuses.PASSED,
    f"{HANGS}::test_12_teardown_hangs_holding_the_gil": statuses.TIMEOUT,
    f"{HANGS}::test_13_ok": statuses.PASSED,
}
# Where the stacks cell_main asks for can be printed (the signal is neither blocked nor ignored),
# the record's log_tail names the hung function.
HANG_STACKS = {
    f"{HANGS}::test_04_catastrophic_regex": "in test_04_catastrophic_regex",
    f"{HANGS}::test_06_busy_loop_with_a_huge_switch_interval": "in _spin",
    f"{HANGS}::test_08_another_thread_hogs_the_gil": "in _spin",
}

CHANNEL = "test_channel.py"
CHANNEL_TESTS = (
    "test_01_ok", "test_02_closes_descriptors_3_to_1023", "test_03_ok", "test_04_closes_every_descriptor_it_did_not_open",
    "test_05_ok", "test_06_puts_dev_null_over_every_descriptor", "test_07_ok", "test_08_patches_json_for_good", "test_09_ok",
    "test_10_patches_os_for_good", "test_11_ok", "test_12_patches_clocks_threads_and_signals_for_good", "test_13_ok",
    "test_14_replaces_the_environment", "test_15_ok", "test_16_replaces_the_standard_streams", "test_17_ok",
)  # fmt: skip

OUTPUTS = "test_outputs_dir.py"
_OUT = "the target's outputs directory (TEST_UNDECLARED_OUTPUTS_DIR), where the runtime writes the results"
_NEW = "the runtime made a new one (what earlier tests kept there is lost)"
OUTPUTS_RECORDS = {
    f"{OUTPUTS}::test_1_ok": (statuses.PASSED, ""),
    f"{OUTPUTS}::test_2_removes_it": (statuses.ERROR, f"this test removed {_OUT}; {_NEW}"),
    f"{OUTPUTS}::test_3_ok": (statuses.PASSED, ""),
    f"{OUTPUTS}::test_4_replaces_it_with_a_file": (statuses.ERROR, f"this test replaced {_OUT} with a file; {_NEW}"),
    f"{OUTPUTS}::test_5_ok": (statuses.PASSED, ""),
    f"{OUTPUTS}::test_6_makes_it_read_only": (statuses.ERROR, f"this test made {_OUT} unwritable; the runtime made it writable again"),
    f"{OUTPUTS}::test_7_ok": (statuses.PASSED, ""),
    f"{OUTPUTS}::test_8_replaces_it_with_a_symlink": (statuses.ERROR, f"this test replaced {_OUT} with a symbolic link; {_NEW}"),
    f"{OUTPUTS}::test_9_ok": (statuses.PASSED, ""),
}

MEMORY = "test_memory.py"
MEMORY_MIB = 300
MEMORY_STATUSES = {
    f"{MEMORY}::test_1_prints_to_stdout_and_the_stderr_descriptor": statuses.PASSED,
    f"{MEMORY}::test_2_logs_warnings": statuses.PASSED,
    f"{MEMORY}::test_3_fails_with_a_huge_message": statuses.FAILED,
    f"{MEMORY}::test_4_ok": statuses.PASSED,
}
# 2 x 300 MiB went through each cell (stdout and the stderr descriptor), and 300 MiB of logging: its
# largest process (the pytest child: Python, pytest and torch take ~400 MiB) stays under this.
# Before the bounds, cell_main reached 3.0 GiB and the child 2.0 GiB.
MEMORY_BOUND_KIB = 1024 * 1024
# Printing 600 MiB takes the test a few seconds; recording it must not count against its timeout
# (before, serialising the output turned the pass into `timeout` at 8 s).
MEMORY_TIMEOUT_S = 30
# pytest's capture modes a suite may choose (matrix.yaml pytest_args): fd (the default), sys, tee-sys, no.
MEMORY_CELLS = {"memory_fd": (), "memory_sys": ("--capture=sys",), "memory_tee_sys": ("--capture=tee-sys",), "memory_no_capture": ("-s",)}

EMPTY_PATTERNS = "pytest collects functions matching python_functions ['test'], classes matching python_classes ['Test'] (without an __init__) in files matching python_files ['test_*.py', '*_test.py']"


def _memory_cell(pytest_args: tuple[str, ...]) -> Cell:
    return Cell(
        "reach/memory",
        (MEMORY,),
        test_timeout_s=MEMORY_TIMEOUT_S,
        env={"REACH_MEMORY_MIB": str(MEMORY_MIB)},
        measure_rss=True,
        args=tuple(f"--pytest-arg={a}" for a in pytest_args),
    )


# Heaviest first: the hangs restart their child six times, the memory cells write 600 MiB each.
CELLS: dict[str, Cell] = {
    "hangs": Cell("reach/hangs", (HANGS,), test_timeout_s=TIMEOUT_S),
    **{name: _memory_cell(args) for name, args in MEMORY_CELLS.items()},
    "hang_import": Cell("reach/hang_import", ("test_a_import_hangs.py", "test_b_after.py"), test_timeout_s=TIMEOUT_S),
    "hang_exit": Cell("reach/hang_exit", ("test_exit_hangs.py",), test_timeout_s=TIMEOUT_S),
    "channel": Cell("reach/channel", (CHANNEL,)),
    "outputs": Cell("reach/outputs", (OUTPUTS,)),
    "empty": Cell("reach/empty", ("test_nothing_here.py",)),
    "empty_patterns": Cell("reach/empty_patterns", ("test_checks.py",)),
}

cells = pool_fixture(CELLS, "reach")


# --- hangs: the per-test timeout is enforced from outside the test's process --------------------


@uses("hangs")
def test_a_hang_that_holds_the_gil_or_keeps_signals_out_ends_at_the_timeout(cells):
    run = cells["hangs"]
    assert run.statuses == HANG_STATUSES, run.explain()
    for nodeid, status in HANG_STATUSES.items():
        if status == statuses.TIMEOUT:
            m = run.matrix(nodeid)
            assert (m["message"], m["error_type"]) == (f"timed out after {TIMEOUT_S}s (per-test timeout)", statuses.TIMEOUT), (nodeid, m)
            assert f"TIMEOUT: {nodeid} ran longer than {TIMEOUT_S}s" in m["log_tail"], (nodeid, m["log_tail"])
    for nodeid, frame in HANG_STACKS.items():
        assert frame in run.matrix(nodeid)["log_tail"], (nodeid, run.matrix(nodeid)["log_tail"])
    assert run.problems == [] and run.report["matrix"]["restarts"] == 6, run.explain()
    assert run.returncode == 1


@uses("hang_import")
def test_a_file_whose_import_hangs_holding_the_gil_times_out_and_the_other_files_run(cells):
    run = cells["hang_import"]
    assert run.statuses == {
        "test_a_import_hangs.py": statuses.TIMEOUT,
        "test_b_after.py::test_ok_1": statuses.PASSED,
        "test_b_after.py::test_ok_2": statuses.PASSED,
    }, run.explain()
    m = run.matrix("test_a_import_hangs.py")
    assert m["message"] == f"timed out after {TIMEOUT_S}s (per-test timeout) while this file was being imported", m
    assert f"TIMEOUT: test_a_import_hangs.py ran longer than {TIMEOUT_S}s" in m["log_tail"], m["log_tail"]
    assert run.problems == [] and run.returncode == 1, run.explain()


@uses("hang_exit")
def test_a_process_that_cannot_exit_after_its_last_test_keeps_every_result_and_fails_the_target(cells):
    run = cells["hang_exit"]
    assert run.statuses == {f"test_exit_hangs.py::test_{n}": statuses.PASSED for n in ("1_ok", "2_leaves_a_thread_behind", "3_ok")}, (
        run.explain()
    )
    assert run.problems == [
        f"the test process stopped responding for {BETWEEN_TESTS_S:g}s after test_exit_hangs.py::test_3_ok ended "
        "(a thread, signal handler or atexit handler left running?); it was killed"
    ], run.explain()
    assert run.returncode == 1


# --- the channel: what cell_main relies on is out of the test's reach ------------------------------


@uses("channel")
def test_a_test_that_breaks_descriptors_the_stdlib_or_the_environment_keeps_its_true_status(cells):
    run = cells["channel"]
    assert run.statuses == {f"{CHANNEL}::{name}": statuses.PASSED for name in CHANNEL_TESTS}, run.explain()
    assert run.problems == [] and run.report["matrix"]["restarts"] == 0 and run.returncode == 0, run.explain()
    # The capture the closed descriptors belonged to works again for the next test.
    assert run.tests[f"{CHANNEL}::test_05_ok"]["call"]["stdout"] == "captured as usual\n"


@uses("outputs")
def test_a_test_that_destroys_the_outputs_directory_alone_is_error_and_the_outputs_are_written(cells):
    run = cells["outputs"]
    got = {nodeid: (run.matrix(nodeid)["status"], run.matrix(nodeid)["message"]) for nodeid in run.tests}
    assert got == OUTPUTS_RECORDS, run.explain()
    out = run.tmp / "out"
    assert stat.S_ISDIR(os.lstat(out).st_mode) and os.lstat(out).st_mode & stat.S_IRWXU == stat.S_IRWXU
    assert sorted(p.name for p in out.iterdir()) == ["matrix_results.json", "report.json"]
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
    assert run.statuses == MEMORY_STATUSES and run.problems == [], run.explain()
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
    assert run.matrix(file)["message"] == f"no tests collected from this file: {EMPTY_PATTERNS}", run.matrix(file)
    assert run.problems == [] and run.returncode == 1
    digest = json.loads((run.tmp / "out" / "matrix_results.json").read_text())
    assert [row[0] for row in digest["tests"]] == [file]
